"""Tiny phantom datasets, made once per session with data_prep, and helpers to run bundles in-process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES_DIR = REPO_ROOT / "bundles"
SCHEMA = BUNDLES_DIR / "schema" / "meta_schema.json"

# bundle -> phantom kind it trains on (cardiac_dynunet takes the NIfTI path, cardiac_unet the PNG one)
BUNDLE_DATA = {
    "isic_unet": "isic",
    "isic_flexunet_resnet34": "isic",
    "isic_flexunet_mobilenetv2": "isic",
    "ham10000_flexunet_resnet34": "ham10000",
    "cardiac_unet": "cardiac-png",
    "cardiac_dynunet": "acdc",
}
# phantom kind -> (number of images or patients, extra converter arguments)
PHANTOMS = {
    "isic": (12, ["--max-size", "48"]),
    "ham10000": (16, ["--max-size", "48"]),
    "cardiac-png": (12, []),
    "acdc": (4, []),
}
# the smallest settings that still run every part of a bundle
TINY = {"spatial_size": [32, 32], "batch_size": 4, "num_workers": 0, "max_epochs": 1}


def config_files(bundle: str, *names: str) -> list[str]:
    """Paths of a bundle's configs, e.g. ``config_files("isic_unet", "train", "evaluate")``."""
    return [str(BUNDLES_DIR / bundle / "configs" / f"{n}.json") for n in names]


def make_workflow(bundle: str, names: tuple[str, ...], workflow_type: str = "train", **override):
    """An initialised ``ConfigWorkflow`` of ``bundle`` with ``override`` applied (not run yet)."""
    from monai.bundle import ConfigWorkflow

    files = config_files(bundle, *names)
    workflow = ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(BUNDLES_DIR / bundle / "configs" / "metadata.json"),
        workflow_type=workflow_type,
        **override,
    )
    workflow.initialize()
    return workflow


def run_workflow(bundle: str, names: tuple[str, ...], workflow_type: str = "train", **override):
    """Initialise, run and finalise a bundle workflow in-process; returns the workflow."""
    workflow = make_workflow(bundle, names, workflow_type, **override)
    workflow.run()
    workflow.finalize()
    return workflow


@pytest.fixture(scope="session")
def phantom_data(tmp_path_factory):
    """Return ``get(kind) -> Path`` of a converted phantom dataset; each kind is made once, when first asked."""
    from data_prep.__main__ import main as data_prep_main

    root = tmp_path_factory.mktemp("bundle_data")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            n, extra = PHANTOMS[kind]
            raw, out = root / f"raw_{kind}", root / kind
            assert data_prep_main(["phantom", kind, "--out", str(raw), "--n", str(n), "--seed", "1"]) in (0, None)
            assert data_prep_main([kind, "--src", str(raw), "--out", str(out), "--seed", "1", *extra]) in (0, None)
            made[kind] = out
        return made[kind]

    return get


def testing_images(dataset: Path, out: Path, n: int = 2) -> list[Path]:
    """Copy ``n`` testing images of a converted dataset into ``out`` (an inference input folder)."""
    datalist = json.loads((dataset / "datalist.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    items = datalist["testing"] or datalist["validation"]
    for item in items[:n]:
        src = dataset / item["image"]
        shutil.copy(src, out / src.name)
        copied.append(out / src.name)
    return copied
