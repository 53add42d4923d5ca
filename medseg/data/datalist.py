"""Read a ``data_prep`` datalist (Decathlon-style JSON) with errors a user can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SECTIONS = ("training", "validation", "testing")


class DatalistError(ValueError):
    """A datalist that is missing, malformed or lacks what a workflow needs; the message names the file."""


def read_datalist(path: str | Path) -> dict[str, Any]:
    """Load and check the whole datalist JSON.

    Args:
        path: the ``datalist.json`` written by ``python -m data_prep``.

    Returns:
        the parsed datalist, paths unchanged (relative to its folder).

    Raises:
        DatalistError: the file does not exist, is not JSON, or is not a datalist.
    """
    path = Path(path)
    if not path.is_file():
        raise DatalistError(
            f"{path}: datalist not found; create one with 'python -m data_prep SOURCE --src RAW --out DIR' "
            "and pass --dataset_dir DIR (or --datalist PATH)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatalistError(f"{path}: not valid JSON ({exc}); regenerate it with python -m data_prep") from exc
    if not isinstance(data, dict) or "labels" not in data:
        raise DatalistError(f"{path}: not a data_prep datalist (no 'labels' key); regenerate it")
    return data


def load_datalist(path: str | Path, section: str = "training", require_label: bool = True) -> list[dict]:
    """Return one section's items with absolute paths, ready for a MONAI ``Dataset``.

    Args:
        path: the ``datalist.json``.
        section: ``training``, ``validation`` or ``testing``.
        require_label: whether every item must have a ``label`` (training and validation need one).

    Returns:
        the items, with ``image`` and ``label`` resolved against the datalist's folder.

    Raises:
        DatalistError: the section is missing or empty, or an item lacks an image or label.
    """
    path = Path(path)
    data = read_datalist(path)
    if section not in data:
        raise DatalistError(f"{path}: has no {section!r} section (it has {sorted(k for k in data if k in SECTIONS)})")
    items = data[section]
    if not isinstance(items, list) or not items:
        raise DatalistError(f"{path}: the {section!r} section is empty; check the split ratios used by data_prep")
    base = path.parent
    resolved = []
    for i, item in enumerate(items):
        if "image" not in item:
            raise DatalistError(f"{path}: {section}[{i}] has no 'image'")
        if require_label and "label" not in item:
            raise DatalistError(f"{path}: {section}[{i}] ({item.get('case_id', '?')}) has no 'label'")
        new = dict(item)
        for key in ("image", "label"):
            if key in new and isinstance(new[key], str):
                new[key] = str((base / new[key]).resolve())
        resolved.append(new)
    return resolved
