"""Fixtures of the sharing tests: a minimal bundle, its schema, and a few input images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.medseg.sharing.bundle_factory import make_bundle, write_schema


@pytest.fixture(scope="session")
def rgb_bundle(tmp_path_factory) -> Path:
    """A 3-channel, 2-class bundle with models/model.pt and its sha256 (do not modify: copy it)."""
    return make_bundle(tmp_path_factory.mktemp("rgb") / "bundle")


@pytest.fixture(scope="session")
def grey_bundle(tmp_path_factory) -> Path:
    """A 1-channel, 4-class (cardiac-like) bundle."""
    labels = {"0": "background", "1": "rv", "2": "myocardium", "3": "lv"}
    return make_bundle(tmp_path_factory.mktemp("grey") / "bundle", in_channels=1, labels=labels)


def make_package(root: Path, bundle: Path, **kwargs) -> Path:
    """``medseg package`` of a factory bundle with its own random weights; returns the package folder."""
    from medseg.sharing.package import package

    result = package(bundle, str(bundle / "models" / "model.pt"), root, schema=bundle / "configs" / "meta_schema.json",
                     **kwargs)  # fmt: skip
    return result.folder


@pytest.fixture(scope="session")
def rgb_package(rgb_bundle, tmp_path_factory) -> Path:
    """The RGB bundle packaged (manifest.json, safetensors, hashes; unsigned). Do not modify: copy it."""
    return make_package(tmp_path_factory.mktemp("rgb_package"), rgb_bundle)


@pytest.fixture(scope="session")
def grey_package(grey_bundle, tmp_path_factory) -> Path:
    """The 4-class greyscale bundle packaged."""
    return make_package(tmp_path_factory.mktemp("grey_package"), grey_bundle)


@pytest.fixture
def package_copy(rgb_package, tmp_path) -> Path:
    """A private copy of the RGB package that a test may tamper with."""
    return Path(shutil.copytree(rgb_package, tmp_path / "package_copy"))


@pytest.fixture
def bundle_copy(rgb_bundle, tmp_path) -> Path:
    """A private copy of the RGB bundle that a test may tamper with."""
    return Path(shutil.copytree(rgb_bundle, tmp_path / "bundle_copy"))


@pytest.fixture(scope="session")
def schema(tmp_path_factory) -> Path:
    return write_schema(tmp_path_factory.mktemp("schema") / "meta_schema.json")


def write_rgb_images(folder: Path, sizes=((40, 50), (37, 61)), seed: int = 0) -> list[Path]:
    """Random RGB PNGs of the given (height, width)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
