"""Experiment and run names.

Every run gets a unique name (bundle, time, short id): MONAI's ``MLFlowHandler`` reuses the latest unfinished run
with the same name, so a fixed or missing name would append to an earlier crashed run.
"""

from __future__ import annotations

import re
import time
import uuid


def _slug(text: str) -> str:
    # metadata.json names read "isic unet": spaces become "_" so the name matches the bundle's folder
    text = re.sub(r"\s+", "_", str(text).strip())
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "unnamed"


def experiment_name(bundle_name: str, dataset_name: str | None = None) -> str:
    """``<bundle>/<dataset>`` (or just the bundle when the dataset is unknown)."""
    return f"{_slug(bundle_name)}/{_slug(dataset_name)}" if dataset_name else _slug(bundle_name)


_PENDING: dict[tuple[str, str], str] = {}


def run_name(bundle_name: str, kind: str = "train") -> str:
    """``<bundle>-<kind>-<YYYYmmdd-HHMMSS>-<6 hex>``: unique, sortable, readable.

    The same name is returned for the same bundle and kind until a run of that name starts (:func:`release`):
    MONAI parses a bundle's config more than once (``--tracking`` evaluates ``output_dir`` to export the
    executed config, then the run parses it afresh), and ``output_dir`` is named after the run, so every parse
    must see one name.
    """
    key = (_slug(bundle_name), kind)
    if key not in _PENDING:
        _PENDING[key] = f"{key[0]}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return _PENDING[key]


def release(name: str | None) -> None:
    """A run named ``name`` has started: the next :func:`run_name` call makes a new name."""
    for key, pending in list(_PENDING.items()):
        if pending == name:
            del _PENDING[key]
