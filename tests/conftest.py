"""Fixtures shared by all tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import private_tracking_store

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real samples live beside the checkout and are never copied into the repository.
SHARED_DATA = Path(os.environ.get("MEDSEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def torch_backend_by_default():
    """medseg predict runs PyTorch unless a test asks for another backend: many tests compare masks pixel for
    pixel between two paths, and which backend a machine would choose (``auto``) must not enter that comparison."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSEG_BACKEND", "torch")
        yield


@pytest.fixture(autouse=True, scope="session")
def session_tracking_store(tmp_path_factory):
    """Every bundle run in the tests logs to a throw-away MLflow store, never to ~/.medseg or a team server."""
    with private_tracking_store(tmp_path_factory.mktemp("medseg_home")) as home:
        yield home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; tests that use it are skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA
