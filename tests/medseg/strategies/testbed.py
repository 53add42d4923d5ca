"""The tiny tracking test bundle (``tests/medseg/tracking/tiny_bundle.py``) made into a strategies test bed.

Adds what the strategies need and the real bundles have: a ``seed`` id, a training split with three folds, a
labelled test split, a ``stats.json`` beside the datalist, and optionally a tiny FlexibleUNet (resnet10 encoder with
batch norm, small decoder) in place of the UNet.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    """The tracking test bed's random squares with three folds, a labelled test split and stats.json."""
    return tiny_bundle.write_dataset(folder, n_train=n_train, n_val=n_val, n_test=n_test, size=size, folds=folds)


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
    config["log_model"] = False  # logging a model costs seconds; tests/medseg/tracking/test_models.py covers it
    (bundle / "configs" / "train.json").write_text(json.dumps(config, indent=1))
    return bundle
