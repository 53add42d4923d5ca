"""The tiny tracking test bundle (``tests/medseg/tracking/tiny_bundle.py``) made into a strategies test bed.

Adds what the strategies need and the real bundles have: a ``seed`` id, a training split with three folds, a
labelled test split, a ``stats.json`` beside the datalist, and optionally a tiny FlexibleUNet (resnet10 encoder with
batch norm, small decoder) in place of the UNet.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.medseg.tracking import tiny_bundle

BUNDLE_NAME = tiny_bundle.BUNDLE_NAME
DATASET_NAME = tiny_bundle.DATASET_NAME
FLEXUNET = {
    "_target_": "FlexibleUNet",
    "in_channels": 1,
    "out_channels": 2,
    "backbone": "resnet10",
    "pretrained": False,
    "spatial_dims": 2,
    "decoder_channels": [16, 8, 8, 4, 4],
}


def write_dataset(
    folder: Path, n_train: int = 6, n_val: int = 2, n_test: int = 2, size: int = 32, folds: int = 3
) -> Path:
    """Random squares (as the tracking test bed) with folds, a test split and stats.json; returns the datalist."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    items, pixels = [], {"0": 0, "1": 0}
    for i in range(n_train + n_val + n_test):
        image = rng.integers(0, 100, (size, size), dtype=np.uint8)
        label = np.zeros((size, size), np.uint8)
        top, left = rng.integers(2, size // 2, 2)
        label[top : top + size // 3, left : left + size // 3] = 1
        image[label == 1] += 120
        Image.fromarray(image).save(folder / f"case{i}.png")
        Image.fromarray(label).save(folder / f"case{i}_seg.png")
        items.append(
            {
                "image": f"case{i}.png",
                "label": f"case{i}_seg.png",
                "case_id": f"case{i}",
                "group_id": f"case{i}",
                "fold": i % folds if i < n_train else -1,
            }
        )
        if i < n_train:
            pixels["1"] += int(label.sum())
            pixels["0"] += int(label.size - label.sum())
    datalist = {
        "name": DATASET_NAME,
        "description": "random squares",
        "modality": "phantom",
        "labels": {"0": "background", "1": "square"},
        "training": items[:n_train],
        "validation": items[n_train : n_train + n_val],
        "testing": items[n_train + n_val :],
    }
    (folder / "datalist.json").write_text(json.dumps(datalist))
    total = sum(pixels.values())
    stats = {
        "class_frequency": {
            "training": {
                "pixels": pixels,
                "fraction": {k: v / total for k, v in pixels.items()},
                "items_with_class": {"0": n_train, "1": n_train},
            }
        }
    }
    (folder / "stats.json").write_text(json.dumps(stats))
    return folder / "datalist.json"


def write_bundle(root: Path, dataset_dir: Path, network: str = "unet", name: str = BUNDLE_NAME) -> Path:
    """``root/<name>`` with metadata.json and train.json (the tracking block appended, a ``seed`` id)."""
    bundle = root / name
    (bundle / "configs").mkdir(parents=True, exist_ok=True)
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"name": name, "version": "0.1.2"}))
    config = tiny_bundle.train_config(dataset_dir, bundle)
    config["max_epochs"] = 1
    config["seed"] = 7
    config["initialize"] = ["$monai.utils.set_determinism(seed=@seed)"]
    if network == "flexunet":
        config["network_def"] = dict(FLEXUNET)
    config |= tiny_bundle.documented_block("train")
    (bundle / "configs" / "train.json").write_text(json.dumps(config, indent=1))
    return bundle
