"""Small helpers shared by several test packages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def private_tracking_store(home: Path) -> Iterator[Path]:
    """While inside, MLflow runs go to ``home/mlflow.db`` (``MEDSEG_HOME``), never ~/.medseg or a team server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSEG_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield home
