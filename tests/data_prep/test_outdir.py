"""Output safety: --out never overlaps --src, only data_prep's own files are replaced, killed runs are cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_prep import outdir
from data_prep.__main__ import main
from data_prep.datalist import convert
from data_prep.errors import DataPrepError
from tests.data_prep.test_datalist import FAKE, _make_src, _options

REPO = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (symlinks not followed)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def png_raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("png") / "raw"
    assert main(["phantom", "cardiac-png", "--out", str(root), "--n", "12"]) == 0
    return root


@pytest.mark.parametrize("layout", ["same", "out_inside_src", "src_inside_out", "symlink_to_src"])
def test_out_overlapping_src_is_refused_and_source_untouched(png_raw, tmp_path, capsys, layout):
    import shutil

    work = tmp_path / "W"
    src = work / "raw"
    shutil.copytree(png_raw, src)
    # the scenario: an earlier output in the folder that is now given as both --src and --out
    assert main(["cardiac-png", "--src", str(src), "--out", str(work / "first")]) == 0
    for name in ("datalist.json", outdir.MANIFEST_NAME):
        (src / name).write_bytes((work / "first" / name).read_bytes())
    if layout == "same":
        out = src
    elif layout == "out_inside_src":
        out = src / "derived"
    elif layout == "src_inside_out":
        out = work
    else:
        out = tmp_path / "link"
        out.symlink_to(src, target_is_directory=True)
    before = snapshot(work)
    capsys.readouterr()
    assert main(["cardiac-png", "--src", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "--src" in err[0], err
    assert snapshot(work) == before


def test_manifest_lists_every_file_and_a_rerun_replaces_only_those(tmp_path):
    src = _make_src(tmp_path / "src")
    out = tmp_path / "out"
    convert(FAKE, _options(src, out))
    manifest = json.loads((out / outdir.MANIFEST_NAME).read_text())
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert manifest["files"] == on_disk and "images/c000.png" in on_disk
    convert(FAKE, _options(src, out, seed=2))  # replaces: every file there is its own
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_a_foreign_folder_is_refused_naming_its_files(tmp_path):
    src = _make_src(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (out / "datalist.json").write_text("{}")  # looks like an output but has no manifest
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(DataPrepError, match="not a data_prep output .*datalist.json, thesis.docx"):
        convert(FAKE, _options(src, out))
    assert (out / "thesis.docx").read_text() == "precious"


def test_a_foreign_file_added_during_the_run_is_not_deleted(tmp_path, monkeypatch):
    src = _make_src(tmp_path / "src")
    out = tmp_path / "out"
    convert(FAKE, _options(src, out))
    real = outdir.write_manifest

    def add_user_file(folder):
        (out / "added_meanwhile.txt").write_text("mine")
        real(folder)

    monkeypatch.setattr(outdir, "write_manifest", add_user_file)
    with pytest.raises(DataPrepError, match="added_meanwhile.txt"):
        convert(FAKE, _options(src, out, seed=1))
    assert (out / "added_meanwhile.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_staging_folders_are_removed_only_when_their_owner_is_gone(tmp_path):
    src = _make_src(tmp_path / "src")
    out = tmp_path / "out"
    dead = tmp_path / f".out{outdir.STAGING_TAG}{_dead_pid()}"
    dead.mkdir()
    (dead / "images").mkdir()
    (dead / outdir.OWNER_NAME).write_text(json.dumps({**outdir.owner_record(), "pid": dead.name.rsplit("-", 1)[1]}))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        alive = tmp_path / f".out{outdir.STAGING_TAG}{sleeper.pid}"
        alive.mkdir()
        record = {**outdir.owner_record(), "pid": sleeper.pid, "start": outdir._process_start(sleeper.pid)}
        (alive / outdir.OWNER_NAME).write_text(json.dumps(record))
        reused = tmp_path / f".out{outdir.STAGING_TAG}{os.getpid() + 0}"
        reused.mkdir()  # this pid is alive, but its start time says it is another process: a reused pid
        (reused / outdir.OWNER_NAME).write_text(json.dumps({**outdir.owner_record(), "start": "1"}))
        convert(FAKE, _options(src, out))
        assert not dead.exists() and not reused.exists()
        assert alive.exists(), "the staging folder of a running conversion was removed"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_kill_9_leftovers_are_cleaned_by_the_next_run(tmp_path):
    src = _make_src(tmp_path / "src", n_groups=4)
    (src / "g03__c011.txt").write_text("SLEEP\n")
    out = tmp_path / "out"
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import argparse; from data_prep.datalist import convert; "
            f"convert({FAKE!r}, argparse.Namespace(src={str(src)!r}, out={str(out)!r}, folds=None, val_ratio=0.2, "
            "test_ratio=0.1, seed=0, max_size=None, workers=1, skip_bad=False))")
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while not list(tmp_path.glob(".out.partial-*/images/c010.png")) and time.time() < deadline:
            time.sleep(0.1)
        assert list(tmp_path.glob(".out.partial-*")), "the child never started converting"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert list(tmp_path.glob(".out.partial-*")) and not out.exists()
    (src / "g03__c011.txt").write_text("0 1\n1 0\n")
    convert(FAKE, _options(src, out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
