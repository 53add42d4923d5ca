"""One rule finds a bundle (explicit path, ./bundles, installed) and runs write to the workspace, never a bundle."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from medseg.bundle import BundleInputError, find_bundle, latest_checkpoint, run_dir, workspace
from medseg.bundle.paths import installed_bundles_dir
from medseg.cli import main
from tests.bundles.conftest import BUNDLES_DIR


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDSEG_WORK", raising=False)
    return tmp_path


def test_installed_bundles_are_found_from_any_folder(elsewhere):
    folder, where = find_bundle("cardiac_unet")
    assert where == "installed with medseg" and folder == (installed_bundles_dir() / "cardiac_unet").resolve()
    assert (folder / "configs" / "train.json").is_file()


def test_current_folder_wins_over_installed_and_a_path_wins_over_both(elsewhere):
    local = elsewhere / "bundles" / "cardiac_unet"
    shutil.copytree(BUNDLES_DIR / "cardiac_unet" / "configs", local / "configs")
    assert find_bundle("cardiac_unet") == (local.resolve(), "current folder")
    other = elsewhere / "mine"
    shutil.copytree(BUNDLES_DIR / "isic_unet" / "configs", other / "configs")
    assert find_bundle(other) == (other.resolve(), "given path")


def test_unknown_bundle_lists_the_known_ones(elsewhere):
    with pytest.raises(BundleInputError, match="cardiac_unett: not a bundle.*cardiac_unet"):
        find_bundle("cardiac_unett")


def test_runs_write_to_the_workspace(elsewhere, monkeypatch):
    assert workspace() == elsewhere / "medseg_work"
    assert run_dir("cardiac_unet", "train-1") == str(elsewhere / "medseg_work" / "cardiac_unet" / "train-1")
    monkeypatch.setenv("MEDSEG_WORK", str(elsewhere / "w"))
    assert run_dir("cardiac_unet", "r") == str(elsewhere / "w" / "cardiac_unet" / "r")


def test_default_checkpoint_is_the_shipped_one_else_the_newest_run(elsewhere):
    missing = latest_checkpoint("cardiac_unet")  # no run yet: where runs would be, for the loader's message
    assert missing == str(workspace() / "cardiac_unet" / "model.pt") and not os.path.exists(missing)
    for name in ("run-a", "run-b"):
        path = workspace() / "cardiac_unet" / name / "model.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        os.utime(path, (time.time() - (100 if name == "run-a" else 0),) * 2)
    assert latest_checkpoint("cardiac_unet").endswith("run-b/model.pt")
    shipped = elsewhere / "packaged" / "models" / "model.pt"
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(b"")
    assert latest_checkpoint("cardiac_unet", elsewhere / "packaged") == str(shipped)


def test_bundles_command_lists_and_exports(elsewhere, capsys):
    assert main(["bundles"]) == 0
    out = capsys.readouterr().out
    assert "installed with medseg" in out and "cardiac_unet" in out and "segments" in out
    assert main(["bundles", "export", "cardiac_unet", "work"]) == 0
    exported = elsewhere / "work" / "bundles" / "cardiac_unet"
    assert (exported / "configs" / "train.json").read_text() == (BUNDLES_DIR / "cardiac_unet" / "configs" /
                                                                 "train.json").read_text()
    assert main(["bundles", "export", "cardiac_unet", "work"]) == 2  # never over an existing copy
    assert "exists" in capsys.readouterr().err
    os.chdir(elsewhere / "work")
    assert find_bundle("cardiac_unet")[1] == "current folder"
