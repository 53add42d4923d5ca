"""Writing medseg's small JSON files whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(data: Any, path: str | Path, indent: int = 2) -> Path:
    """Write ``data`` as JSON to ``path`` through a temporary file renamed into place, so that a reader never sees
    half a file (an interrupted write leaves the old file, or none); missing parent folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=indent) + "\n")
    tmp.replace(path)
    return path
