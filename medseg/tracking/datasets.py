"""The datalist as MLflow datasets: one input per split, with a digest, the source path and the class statistics.

MLflow's Datasets column shows ``<dataset name>/<split> (digest)`` for each run, so runs on different data (another
datalist, another fold, an edited split) are told apart at a glance. Each split is an ``mlflow.data`` pandas dataset
of the split's items (image, label, case, group and fold columns: its profile counts them); its digest is the
sha256 of those items; its source is the datalist file. The class statistics of ``stats.json`` (beside the
datalist) go into params (``data.class_fraction.<label>``) and the files themselves into ``data/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
SPLITS = ("training", "validation", "testing")
CONTEXT_TAG = "mlflow.data.context"


def read_datalist(datalist: str | Path | None) -> dict | None:
    """The datalist as a dict, or None when it cannot be read."""
    if not datalist:
        return None
    try:
        data = json.loads(Path(datalist).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def split_digest(items: list[dict]) -> str:
    """A short digest of a split's items (order and content)."""
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]


def class_statistics(datalist: str | Path) -> dict[str, float]:
    """``{label name: training pixel fraction}`` from ``stats.json`` beside the datalist; ``{}`` when absent."""
    folder = Path(datalist).parent
    try:
        stats = json.loads((folder / "stats.json").read_text())
    except (OSError, ValueError):
        return {}
    data = read_datalist(datalist) or {}
    names = {str(k): str(v) for k, v in (data.get("labels") or {}).items()}
    fractions = ((stats.get("class_frequency") or {}).get("training") or {}).get("fraction") or {}
    return {names.get(str(k), str(k)): float(v) for k, v in fractions.items() if isinstance(v, (int, float))}


def dataset_inputs(datalist: str | Path) -> list[Any]:
    """One MLflow ``DatasetInput`` per non-empty split (context tag ``training``/``validation``/``testing``)."""
    import mlflow
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag

    data = read_datalist(datalist)
    if data is None:
        return []
    name = str(data.get("name") or Path(datalist).parent.name)
    inputs = []
    for split in SPLITS:
        items = [i for i in data.get(split) or [] if isinstance(i, dict)]
        if not items:
            continue
        frame = pd.DataFrame([{k: v for k, v in i.items() if isinstance(v, (str, int, float))} for i in items])
        dataset = mlflow.data.from_pandas(
            frame,
            source=str(Path(datalist).resolve()),
            name=f"{name}/{split}",
            targets="label" if "label" in frame.columns else None,
            digest=split_digest(items),
        )
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(CONTEXT_TAG, split)]))
    return inputs


def dataset_params(datalist: str | Path) -> dict[str, Any]:
    """``data.<split>_items`` and ``data.class_fraction.<label>`` (rounded to 4 digits)."""
    data = read_datalist(datalist) or {}
    params: dict[str, Any] = {f"data.{split}_items": len(data.get(split) or []) for split in SPLITS}
    params.update({f"data.class_fraction.{k}": round(v, 4) for k, v in class_statistics(datalist).items()})
    return params


def dataset_files(datalist: str | Path) -> list[Path]:
    """The datalist and, when present, ``stats.json`` and ``plans.json`` beside it (logged under ``data/``)."""
    folder = Path(datalist).parent
    return [p for p in (Path(datalist), folder / "stats.json", folder / "plans.json") if p.is_file()]
