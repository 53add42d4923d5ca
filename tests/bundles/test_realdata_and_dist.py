"""cardiac_unet on the real cardiac sample, and a 2-process torchrun training run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundles.conftest import REPO_ROOT, config_files, make_workflow


@pytest.mark.slow
@pytest.mark.realdata
def test_cardiac_unet_learns_on_real_sample(shared_data, tmp_path):
    from ignite.engine import Events

    from data_prep.__main__ import main as data_prep_main

    src = shared_data / "cardiac_png_sample"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    data = tmp_path / "cardiac"
    assert data_prep_main(["cardiac-png", "--src", str(src), "--out", str(data)]) in (0, None)
    workflow = make_workflow("cardiac_unet", ("train",), dataset_dir=str(data), output_dir=str(tmp_path / "models"),
                             max_epochs=4, batch_size=8, spatial_size=[64, 64], num_workers=0, learning_rate=3e-3)
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    dice: list[float] = []
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: dice.append(e.state.metrics["val_mean_dice"]))
    evaluator.run()  # the untrained network's validation Dice, the starting point
    workflow.run()
    assert len(dice) == 5
    assert max(dice[1:]) > dice[0] + 0.1 and max(dice[1:]) > 2 * dice[0], dice


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(phantom_data, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists() or not shutil.which(str(torchrun)):
        pytest.skip("torchrun not installed")
    out = tmp_path / "out"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run", "--config_file",
           str(config_files("cardiac_unet", "train", "multi_gpu_train")), "--dataset_dir",
           str(phantom_data("cardiac-png")), "--output_dir", str(out), "--max_epochs", "1", "--num_workers", "0",
           "--spatial_size", "[32,32]", "--batch_size", "4"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode and "terminate called without an active exception" in proc.stderr:
        # a rare abort inside torch's gloo threads on a loaded 2-core machine (seen once in a CI run, never
        # reproduced in isolation); any other failure, or the same abort twice, still fails the test
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "model.pt").is_file() and (out / "model_final.pt").is_file()
    # only rank 0 logs the epoch's line and the closing summary
    printed = proc.stdout + proc.stderr
    assert printed.count("epoch 1/1  loss") == 1 and printed.count("training finished: 1 epoch(s)") == 1, printed
