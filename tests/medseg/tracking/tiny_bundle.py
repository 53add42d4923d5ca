"""A tiny model-zoo-layout bundle (UNet on random 32x32 PNGs) with the documented tracking block pasted in.

The block is read from ``docs/tracking.md`` so the documentation and the tests cannot drift apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import UNet
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCS = REPO_ROOT / "docs" / "tracking.md"
BUNDLE_NAME = "tiny_unet"
DATASET_NAME = "tinyphantoms"


def documented_block(which: str = "train") -> dict:
    """The JSON block that ``docs/tracking.md`` tells bundle authors to paste (``train`` or ``evaluate``)."""
    text = DOCS.read_text()
    found = re.search(rf"<!-- medseg-tracking-{which}-block -->\s*```json\n(.*?)```", text, re.S)
    assert found, f"{DOCS}: no {which} block"
    return json.loads(found.group(1))


def write_dataset(
    folder: Path, n_train: int = 4, n_val: int = 2, n_test: int = 0, size: int = 32, seed: int = 0, folds: int = 1
) -> Path:
    """Random grey images with a bright square as the foreground label, in the data_prep layout.

    Training items get folds ``0..folds-1``, the others -1; ``stats.json`` holds the training class frequencies.
    Returns the datalist path.
    """
    rng = np.random.default_rng(seed)
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
        fold = i % folds if i < n_train else -1
        items.append(
            {
                "image": f"case{i}.png",
                "label": f"case{i}_seg.png",
                "case_id": f"case{i}",
                "group_id": f"case{i}",
                "fold": fold,
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
    path = folder / "datalist.json"
    path.write_text(json.dumps(datalist))
    total = sum(pixels.values())
    fractions = {k: v / total for k, v in pixels.items()}
    stats = {
        "class_frequency": {
            "training": {"pixels": pixels, "fraction": fractions, "items_with_class": {"0": n_train, "1": n_train}}
        }
    }
    (folder / "stats.json").write_text(json.dumps(stats))
    return path


def _load(section: str) -> list:
    return [
        {"_target_": "LoadImaged", "keys": ["image", "label"], "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": ["image", "label"]},
        {"_target_": "ScaleIntensityd", "keys": "image"},
        *(
            [{"_target_": "RandFlipd", "keys": ["image", "label"], "prob": 0.5, "spatial_axis": 0}]
            if section == "train"
            else []
        ),
        {
            "_target_": "Resized",
            "keys": ["image", "label"],
            "spatial_size": "@spatial_size",
            "mode": ["bilinear", "nearest"],
        },
        {"_target_": "EnsureTyped", "keys": ["image", "label"]},
    ]


def train_config(dataset_dir: Path, bundle_root: Path, network_target: str = "UNet") -> dict:
    """A minimal model-zoo train.json: SupervisedTrainer + SupervisedEvaluator (MeanDice), ValidationHandler,
    CheckpointSaver, EarlyStopHandler, LrScheduleHandler."""
    loader = {"_target_": "DataLoader", "batch_size": "@batch_size", "num_workers": 0}
    return {
        "imports": ["$import os"],
        "bundle_root": str(bundle_root),
        "output_dir": "$@bundle_root + '/models'",
        "dataset_dir": str(dataset_dir),
        "datalist": "$@dataset_dir + '/datalist.json'",
        "device": "$torch.device('cpu')",
        "fold": 0,
        "learning_rate": 0.01,
        "batch_size": 2,
        "max_epochs": 2,
        "val_interval": 1,
        "spatial_size": [32, 32],
        "early_stop_patience": 5,
        "network_def": {
            "_target_": network_target,
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 2,
            "channels": [4, 8],
            "strides": [2],
            "num_res_units": 0,
        },
        "network": "$@network_def.to(@device)",
        "loss": {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True},
        "optimizer": {
            "_target_": "torch.optim.Adam",
            "params": "$@network.parameters()",
            "lr": "@learning_rate",
            "weight_decay": 0.0001,
        },
        "lr_scheduler": {
            "_target_": "torch.optim.lr_scheduler.StepLR",
            "optimizer": "@optimizer",
            "step_size": 1,
            "gamma": 0.5,
        },
        "train": {
            "preprocessing": {"_target_": "Compose", "transforms": _load("train")},
            "dataset": {
                "_target_": "Dataset",
                "data": "$monai.data.load_decathlon_datalist(@datalist, True, 'training', @dataset_dir)",
                "transform": "@train#preprocessing",
            },
            "dataloader": {**loader, "dataset": "@train#dataset", "shuffle": True},
            "inferer": {"_target_": "SimpleInferer"},
            "handlers": [
                {"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler", "print_lr": False},
                {
                    "_target_": "ValidationHandler",
                    "validator": "@validate#evaluator",
                    "epoch_level": True,
                    "interval": "@val_interval",
                },
                {
                    "_target_": "StatsHandler",
                    "tag_name": "train_loss",
                    "output_transform": "$monai.handlers.from_engine(['loss'], first=True)",
                },
            ],
            "trainer": {
                "_target_": "SupervisedTrainer",
                "max_epochs": "@max_epochs",
                "device": "@device",
                "train_data_loader": "@train#dataloader",
                "network": "@network",
                "loss_function": "@loss",
                "optimizer": "@optimizer",
                "inferer": "@train#inferer",
                "train_handlers": "@train#handlers",
            },
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": _load("validate")},
            "dataset": {
                "_target_": "Dataset",
                "data": "$monai.data.load_decathlon_datalist(@datalist, True, 'validation', @dataset_dir)",
                "transform": "@validate#preprocessing",
            },
            "dataloader": {**loader, "dataset": "@validate#dataset", "shuffle": False},
            "inferer": {"_target_": "SimpleInferer"},
            "postprocessing": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                    {"_target_": "AsDiscreted", "keys": ["pred", "label"], "argmax": [True, False], "to_onehot": 2},
                ],
            },
            "early_stop": {
                "_target_": "EarlyStopHandler",
                "patience": "@early_stop_patience",
                "score_function": "$lambda engine: engine.state.metrics['val_mean_dice']",
                "epoch_level": True,
            },
            "handlers": [
                "@validate#early_stop",
                {"_target_": "StatsHandler", "iteration_log": False},
                {
                    "_target_": "CheckpointSaver",
                    "save_dir": "@output_dir",
                    "save_dict": {"model": "@network"},
                    "save_key_metric": True,
                    "key_metric_filename": "model.pt",
                },
            ],
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@validate#dataloader",
                "network": "@network",
                "inferer": "@validate#inferer",
                "postprocessing": "@validate#postprocessing",
                "key_val_metric": {
                    "val_mean_dice": {
                        "_target_": "MeanDice",
                        "include_background": False,
                        "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
                    }
                },
                "val_handlers": "@validate#handlers",
            },
        },
        "initialize": ["$monai.utils.set_determinism(seed=7)"],
        "run": ["$@validate#early_stop.set_trainer(@train#trainer)", "$@train#trainer.run()"],
        "finalize": ["$monai.utils.set_determinism(seed=None)"],
    }


def write_bundle(root: Path, dataset_dir: Path, network_target: str = "UNet", name: str = BUNDLE_NAME) -> Path:
    """``root/<name>/configs/{metadata.json,train.json}`` with the documented block appended; returns the bundle."""
    bundle = root / name
    (bundle / "configs").mkdir(parents=True, exist_ok=True)
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"name": name, "version": "0.1.2"}))
    config = train_config(dataset_dir, bundle, network_target) | documented_block("train")
    (bundle / "configs" / "train.json").write_text(json.dumps(config, indent=1))
    return bundle


def run_bundle(bundle: Path, **override) -> None:
    """``python -m monai.bundle run`` in-process, asking MONAI to export the executed config as medseg's commands
    do (``tracking=None`` runs it as a plain ``python -m monai.bundle run`` without ``--tracking``)."""
    from monai.bundle import run

    from medseg.tracking import EXECUTE_CONFIG_SETTINGS

    override.setdefault("tracking", EXECUTE_CONFIG_SETTINGS)
    if override["tracking"] is None:
        del override["tracking"]
    run(
        config_file=str(bundle / "configs" / "train.json"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        **override,
    )


class RaisingUNet(UNet):
    """A UNet whose forward raises on a given call (1-based), to fail a run mid-training."""

    def __init__(self, *args, fail_on_call: int = 2, error: type[BaseException] = RuntimeError, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls, self.fail_on_call, self.error = 0, fail_on_call, error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise self.error("phantom failure in forward")
        return super().forward(x)


class InterruptedUNet(RaisingUNet):
    """Ctrl-C on the second forward pass."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, fail_on_call=2, error=KeyboardInterrupt, **kwargs)


class SigtermUNet(UNet):
    """A UNet that sends SIGTERM to its own process on its fourth forward pass (the second epoch's first
    training step: two training steps and one validation step per epoch), as SLURM or ``docker stop`` would."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import os
        import signal

        self.calls += 1
        if self.calls == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().forward(x)
