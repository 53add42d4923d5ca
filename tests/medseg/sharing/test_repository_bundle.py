"""The issue's end-to-end test on a repository bundle: train isic_unet for one epoch on phantoms, package it,
unzip it elsewhere, and check that ``monai.bundle run`` and ``medseg predict`` give the same masks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.sharing.check import check_bundle
from medseg.sharing.package import package
from medseg.sharing.predict import predict

REPO = Path(__file__).resolve().parents[3]
BUNDLE = REPO / "bundles" / "isic_unet"


def _run(args: list[str], home: Path, timeout: int = 400) -> None:
    # MEDSEG_HOME keeps any MLflow run the bundle records out of the user's own store
    env = {**os.environ, "MEDSEG_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.skipif(not (BUNDLE / "configs" / "train.json").is_file(), reason="bundles/isic_unet not present")
def test_isic_unet_one_epoch_package_and_both_runners(tmp_path):
    raw, data, train = tmp_path / "raw", tmp_path / "data", tmp_path / "train"
    _run(["-m", "data_prep", "phantom", "isic", "--out", str(raw), "--n", "12"], tmp_path)
    _run(["-m", "data_prep", "isic", "--src", str(raw), "--out", str(data), "--max-size", "64"], tmp_path)
    train_json = str(BUNDLE / "configs" / "train.json")
    overrides = ["--max_epochs", "1", "--spatial_size", "[64,64]", "--num_workers", "0"]
    _run(
        [
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            train_json,
            "--dataset_dir",
            str(data),
            "--output_dir",
            str(train),
            *overrides,
        ],
        tmp_path,
    )
    checkpoint = next(p for p in sorted(train.rglob("*.pt")))
    result = package(BUNDLE, str(checkpoint), tmp_path / "dist")

    shutil.unpack_archive(result.zip, tmp_path / "colleague")
    bundle = tmp_path / "colleague" / result.folder.name
    assert check_bundle(bundle).passed
    images = tmp_path / "images"
    images.mkdir()
    tests = json.loads((data / "datalist.json").read_text())["testing"][:2]
    for item in tests:
        shutil.copy(data / item["image"], images)
    inference_json = str(bundle / "configs" / "inference.json")
    _run(
        [
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            inference_json,
            "--bundle_root",
            str(bundle),
            "--dataset_dir",
            str(images),
            "--output_dir",
            str(tmp_path / "monai"),
        ],
        tmp_path,
    )
    # one image per batch, as the MONAI runner does: a one-epoch model's two logits nearly tie along its boundaries,
    # and bf16 convolutions over a batch of two round such pixels differently from one image alone
    predict(result.zip, images, tmp_path / "ours", batch_size=1)
    for path in sorted(images.iterdir()):
        theirs = np.asarray(Image.open(next((tmp_path / "monai").rglob(f"{path.stem}_seg.png"))))
        ours = np.asarray(Image.open(tmp_path / "ours" / f"{path.stem}_mask.png"))
        assert ours.shape == theirs.shape == np.asarray(Image.open(path)).shape[:2]
        np.testing.assert_array_equal(ours > 0, theirs > 0)
