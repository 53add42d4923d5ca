"""What a dataset is, measured: sizes, spacing, channels, intensities and classes (nnU-Net's fingerprint)."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from medseg.bundle.errors import BundleInputError

INTENSITY_SAMPLE = 32  # training images read for intensity statistics (evenly spread over the split)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise BundleInputError(f"{path}: {what} not found; pass --dataset_dir a folder written by python -m data_prep")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BundleInputError(f"{path}: not valid JSON ({err}); rewrite it with python -m data_prep") from None


def datalist_digest(datalist: str | Path) -> str:
    """sha256 of the datalist file: what a plan is tied to."""
    return hashlib.sha256(Path(datalist).read_bytes()).hexdigest()


def _intensities(paths: list[Path]) -> dict[str, Any]:
    from monai.transforms import LoadImage

    loader = LoadImage(image_only=True, ensure_channel_first=True)
    values, channels, integer, maximum = [], set(), True, 0.0
    for path in paths:
        image = np.asarray(loader(str(path)), dtype=np.float32)
        channels.add(int(image.shape[0]))
        integer = integer and bool(np.all(np.mod(image, 1) == 0))
        maximum = max(maximum, float(image.max()))
        values.append(image.reshape(image.shape[0], -1)[:, :: max(1, image[0].size // 4096)])
    pooled = np.concatenate(values, axis=1)
    return {
        "channels": sorted(channels),
        "mean": [round(float(c.mean()), 4) for c in pooled],
        "std": [round(float(c.std()), 4) for c in pooled],
        "percentile_00_5": round(float(np.percentile(pooled, 0.5)), 4),
        "percentile_99_5": round(float(np.percentile(pooled, 99.5)), 4),
        "max": round(maximum, 4),
        "integer_valued": integer,
        "eight_bit": integer and maximum <= 255,
        "images_read": len(paths),
    }


def fingerprint(dataset_dir: str | Path) -> dict[str, Any]:
    """Measure a ``data_prep`` output folder.

    Args:
        dataset_dir: folder holding ``datalist.json`` and ``stats.json``.

    Returns:
        a JSON-serialisable dict: ``modality``, ``labels``, ``counts`` (items per split), ``image_size``
        (median, min, max), ``spacing`` (median mm per pixel, when the items carry it), ``intensity`` (channels,
        mean, std, percentiles, whether 8-bit), ``class_fraction`` (training pixels per class) and the datalist's
        ``sha256``.

    Raises:
        BundleInputError: a missing or unreadable datalist or stats file.
    """
    folder = Path(dataset_dir)
    datalist_path = folder / "datalist.json"
    datalist = _read_json(datalist_path, "datalist.json")
    stats = _read_json(folder / "stats.json", "stats.json")
    training = datalist.get("training") or []
    if not training:
        raise BundleInputError(f"{datalist_path}: no training items; convert a dataset with python -m data_prep")

    sizes = []
    for size, count in (stats.get("image_size", {}).get("counts") or {}).items():
        sizes += [[int(s) for s in size.split("x")]] * int(count)
    median_size = [int(statistics.median(s[i] for s in sizes)) for i in range(2)] if sizes else None
    spacings = [item["spacing"] for item in training if item.get("spacing")]
    spacing = [round(statistics.median(s[i] for s in spacings), 4) for i in range(2)] if spacings else None

    step = max(1, len(training) // INTENSITY_SAMPLE)
    sample = [folder / item["image"] for item in training[::step][:INTENSITY_SAMPLE]]
    missing = [p for p in sample if not p.is_file()]
    if missing:
        raise BundleInputError(f"{missing[0]}: listed in {datalist_path} but missing; rerun python -m data_prep")
    return {
        "dataset": datalist.get("name", folder.name),
        "modality": datalist.get("modality", "unknown"),
        "labels": datalist.get("labels", {}),
        "counts": {split: len(datalist.get(split) or []) for split in ("training", "validation", "testing")},
        "image_size": {"median": median_size, **{k: stats.get("image_size", {}).get(k) for k in ("min", "max")}},
        "spacing": spacing,
        "intensity": _intensities(sample),
        "class_fraction": stats.get("class_frequency", {}).get("training", {}).get("fraction", {}),
        "sha256": datalist_digest(datalist_path),
    }
