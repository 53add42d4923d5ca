"""benchmarks/bench_gpu.py, the prepared GPU check: it must run end to end wherever it is handed a machine.

No GPU is at hand here or in CI, so the test runs it on the CPU with ``--quick``: the same commands (train with
``amp: auto`` and fp32, torchrun with ``multi_gpu_train.json``, package, predict with and without TTA) at tiny sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "bench_gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=1200, env=env)  # fmt: skip


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "gpu_check"
    done = _run("--quick", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "bench_gpu.json").read_text())
    assert results["environment"]["device"] == "cpu" and results["environment"]["runtime"].startswith("runtime: cpu")
    steps = results["steps"]
    for name in ("train_amp_auto", "train_fp32", "torchrun_1_process"):
        assert len(steps[name]["epoch_seconds"]) == 2, (name, steps[name])
        assert steps[name]["runtime"].startswith("cpu"), (name, steps[name])  # the start-up line, torchrun's too
        assert (out / name / "model.pt").is_file()
    assert "amp off (amp: false)" in steps["train_fp32"]["runtime"]
    for name in ("predict_tta_none", "predict_tta_flips_rot90"):
        assert steps[name]["images_per_second"] > 0
        assert len(list((out / name).glob("*.png"))) == 4
    assert "| torchrun_1_process |" in done.stdout and "amp auto against fp32" in done.stdout


def test_the_gpu_check_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    done = _run("--quick", "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == f"bench_gpu: {tmp_path} is not empty; give a new or empty --out folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"
