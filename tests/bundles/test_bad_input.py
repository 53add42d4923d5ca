"""Bad input ends a bundle run with one line naming the file and the fix, and writes no checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medseg.bundle import BundleInputError
from tests.bundles.conftest import REPO_ROOT, TINY, config_files, make_workflow, run_workflow


def _copy_with_bad_label(dataset, tmp_path, value=7):
    """A copy of a converted dataset whose second training label has a value beyond the classes."""
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    datalist = json.loads((bad / "datalist.json").read_text())
    label = bad / datalist["training"][1]["label"]
    pixels = np.array(Image.open(label))
    pixels[:2, :2] = value
    Image.fromarray(pixels).save(label)
    return bad, label


def test_missing_datalist(tmp_path):
    with pytest.raises(BundleInputError, match="datalist not found"):
        run_workflow("cardiac_unet", ("train",), dataset_dir=str(tmp_path / "nowhere"), output_dir=str(tmp_path),
                     **TINY)


def test_datalist_without_training_section(phantom_data, tmp_path):
    datalist = json.loads((phantom_data("cardiac-png") / "datalist.json").read_text())
    del datalist["training"]
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(datalist))
    with pytest.raises(BundleInputError, match=r"datalist.json: has no 'training' section"):
        run_workflow("cardiac_unet", ("train",), dataset_dir=str(tmp_path), output_dir=str(tmp_path), **TINY)


def test_label_beyond_classes_cli_last_line(phantom_data, tmp_path):
    bad, label = _copy_with_bad_label(phantom_data("cardiac-png"), tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_files("cardiac_unet", "train")[0],
           "--dataset_dir", str(bad), "--output_dir", str(out), "--max_epochs", "1", "--num_workers", "0",
           "--spatial_size", "[32,32]"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(str(label)) and "label values 7 are outside 0..3" in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not list(out.glob("*.pt")) if out.exists() else True


def test_label_beyond_classes_in_dataloader_worker(phantom_data, tmp_path):
    # not cached: the check runs in a DataLoader worker, which re-raises it as text
    bad, label = _copy_with_bad_label(phantom_data("cardiac-png"), tmp_path)
    out = tmp_path / "out"
    with pytest.raises(BundleInputError, match=f"{label}: label values 7"):
        run_workflow("cardiac_unet", ("train",), dataset_dir=str(bad), output_dir=str(out),
                     **{**TINY, "num_workers": 1, "cache_rate": 0.0})
    assert not list(out.glob("*.pt")) if out.exists() else True


def test_image_channels_do_not_match_network(phantom_data, tmp_path):
    # greyscale cardiac slices given to an RGB skin bundle
    expected = r"\.png: image has 1 channel\(s\) \(greyscale\) but the network takes 3"
    with pytest.raises(BundleInputError, match=expected):
        run_workflow("isic_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")), output_dir=str(tmp_path),
                     **TINY)


def test_checkpoint_from_another_network(phantom_data, tmp_path):
    import torch

    cardiac = make_workflow("cardiac_unet", ("inference",), "infer", dataset_dir=str(tmp_path), output_dir="/x")
    ckpt = tmp_path / "cardiac.pt"
    torch.save(cardiac.parser.get_parsed_content("network_def").state_dict(), ckpt)
    with pytest.raises(BundleInputError, match=r"cardiac.pt: checkpoint does not fit bundle 'isic_unet'.*UNet"):
        run_workflow("isic_unet", ("train", "evaluate"), "infer", dataset_dir=str(phantom_data("isic")),
                     output_dir=str(tmp_path / "eval"), ckpt_path=str(ckpt), **TINY)
    assert not (tmp_path / "eval" / "metrics.csv").exists()


def test_missing_checkpoint(phantom_data, tmp_path):
    images = phantom_data("isic") / "images"
    with pytest.raises(BundleInputError, match="checkpoint not found"):
        run_workflow("isic_unet", ("inference",), "infer", dataset_dir=str(images), output_dir=str(tmp_path),
                     ckpt_path=str(tmp_path / "none.pt"), spatial_size=[32, 32])


def test_inference_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(BundleInputError, match="no image found"):
        run_workflow("isic_unet", ("inference",), "infer", dataset_dir=str(tmp_path), output_dir=str(tmp_path / "o"))


def test_spatial_size_not_a_multiple_of_the_network_stride(phantom_data, tmp_path):
    with pytest.raises(BundleInputError, match=r"spatial_size \[40, 40\] must be multiples of 16 .*\[32, 32\]"):
        run_workflow("cardiac_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")),
                     output_dir=str(tmp_path), **{**TINY, "spatial_size": [40, 40]})
