"""A minimal MONAI bundle in the model-zoo layout (tiny 2D UNet, random weights), built in a test's tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["schema", "version", "monai_version", "pytorch_version", "numpy_version", "network_data_format"],
    "properties": {
        "version": {"type": "string"},
        "network_data_format": {
            "type": "object",
            "required": ["inputs", "outputs"],
            "properties": {"inputs": {"type": "object", "required": ["image"]}},
        },
    },
}


def inference_config(in_channels: int = 3, num_classes: int = 2) -> dict:
    """A model-zoo style inference.json that needs only MONAI, torch and numpy."""
    return {
        "imports": ["$import torch", "$import numpy"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "dataset_dir": "inputs",
        "datalist_file": "$@dataset_dir + '/datalist.json'",
        "output_dir": "$@bundle_root + '/eval'",
        "network_def": {
            "_target_": "UNet",
            "spatial_dims": 2,
            "in_channels": in_channels,
            "out_channels": num_classes,
            "channels": [4, 8],
            "strides": [2],
            "num_res_units": 1,
        },
        "network": "$@network_def.to(@device)",
        "datalist": "$monai.data.load_decathlon_datalist(@datalist_file, False, 'testing')",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "ScaleIntensityd", "keys": "image"},
                {"_target_": "Resized", "keys": "image", "spatial_size": [32, 32], "mode": "bilinear"},
                {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
            ],
        },
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "num_workers": 0},
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "@preprocessing",
                    "orig_keys": "image",
                    "nearest_interp": False,
                    "to_tensor": True,
                },
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {
                    "_target_": "SaveImaged",
                    "keys": "pred",
                    "output_dir": "@output_dir",
                    "output_postfix": "seg",
                    "output_ext": ".png",
                    "output_dtype": "$numpy.uint8",
                    "resample": False,
                    "separate_folder": False,
                    "print_log": False,
                },
            ],
        },
        "handlers": [
            {
                "_target_": "CheckpointLoader",
                "load_path": "$@bundle_root + '/models/model.pt'",
                "load_dict": {"model": "@network"},
            },
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
        },
        "run": ["$@evaluator.run()"],
    }


def make_bundle(root: Path, in_channels: int = 3, labels: dict | None = None, seed: int = 0) -> Path:
    """Write a complete bundle (configs, models/model.pt with its sha256, schema copy) under ``root``."""
    import monai
    import numpy
    import torch
    from monai.networks.nets import UNet

    from medseg.sharing.check import sha256_file

    labels = labels or {"0": "background", "1": "lesion"}
    config = inference_config(in_channels, len(labels))
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(seed)
    args = {k: v for k, v in config["network_def"].items() if k != "_target_"}
    net = UNet(**args)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    metadata = {
        "schema": "https://example.org/meta_schema.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": "test bundle"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "num_channels": in_channels,
                    "spatial_shape": [32, 32],
                    "dtype": "float32",
                    "value_range": [0, 1],
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": len(labels),
                    "spatial_shape": [32, 32],
                    "dtype": "float32",
                    "channel_def": labels,
                }
            },
        },
        "model_sha256": {"models/model.pt": sha256_file(root / "models" / "model.pt")},
    }
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    (root / "configs" / "meta_schema.json").write_text(json.dumps(SCHEMA))
    return root


def write_schema(path: Path) -> Path:
    path.write_text(json.dumps(SCHEMA))
    return path
