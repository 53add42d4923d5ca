"""The bad-input suite of ``python -m data_prep``: corrupted variants of every input kind, bad options, faults.

For each: the exit code (2 bad input, 1 failure, 130 Ctrl-C), exactly one line on stderr naming the culprit,
no output (and no staging folder) written, and the source unchanged byte for byte.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.__main__ import main

REPO = Path(__file__).resolve().parents[2]
PHANTOM_N = {"isic": 6, "ham10000": 8, "acdc": 3, "cardiac-png": 10, "sunnybrook": 2}


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (or link target) of everything under ``root``, symlinks not followed."""
    found = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def raws(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("raws")
    for kind, n in PHANTOM_N.items():
        assert main(["phantom", kind, "--out", str(root / kind), "--n", str(n), "--seed", "1"]) == 0
    return {kind: root / kind for kind in PHANTOM_N}


def first(src: Path, pattern: str) -> Path:
    return sorted(src.glob(pattern))[0]


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])
    return path


def save_array(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path, format="PNG")
    return path


def three_values(path: Path) -> Path:
    h, w = np.asarray(Image.open(path)).shape[:2]
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[: h // 2] = 100
    mask[h // 2:, : w // 2] = 200
    return save_array(path, mask)


def other_size(path: Path) -> Path:
    h, w = np.asarray(Image.open(path)).shape[:2]
    return save_array(path, np.zeros((h + 3, w), dtype=np.uint8))


def colour(path: Path) -> Path:
    h, w = np.asarray(Image.open(path)).shape[:2]
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    return save_array(path, rgb)


def text_as(path: Path) -> Path:
    path.write_text("this is not an image\n")
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def symlink_loop(folder: Path, name: str) -> Path:
    link = folder / name
    link.symlink_to(link.name)
    return link


def nifti_with(path: Path, change) -> Path:
    import nibabel as nib

    img = nib.load(path)
    data = np.asanyarray(img.dataobj).astype(np.float32)
    change(data)
    nib.Nifti1Image(data, img.affine).to_filename(path)
    return path


def set_nan(data):
    data[1, 1, 0] = np.nan


def set_label_7(data):
    data[0, 0, 0] = 7


def dicom_modality_ct(path: Path) -> Path:
    import pydicom

    ds = pydicom.dcmread(path)
    ds.Modality = "CT"
    ds.save_as(path)
    return path


def edit_csv(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def edit_first(src: Path, pattern: str, content: str | bytes) -> Path:
    path = first(src, pattern)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def contoured_dicom(src: Path) -> Path:
    """The DICOM of the first i-contour of the first patient (``IM-0001-NNNN`` -> ``<N>.dcm``)."""
    contour = first(src, "contourfiles/SC-HF-I-1/i-contours/*.txt")
    return src / "dicoms" / "SCD0000101" / f"{int(contour.name[8:12])}.dcm"


def orphan_mask(mask_dir: Path, name: str) -> Path:
    source = first(mask_dir, "*.png")
    shutil.copy(source, mask_dir / name)
    return mask_dir / name


ISIC_T = "ISIC-2017_Training_Data"
ISIC_GT = "ISIC-2017_Training_Part1_GroundTruth"
HAM_IMG, HAM_GT, HAM_CSV = "HAM10000_images", "HAM10000_segmentations_lesion_tschandl", "HAM10000_metadata.csv"

# (source, name, breaker(src) -> the file or folder the error line must name)
CASES = [
    ("isic", "truncated jpeg", lambda s: truncate(first(s, f"{ISIC_T}/ISIC_???????.jpg"))),
    ("isic", "text file as jpeg", lambda s: text_as(first(s, f"{ISIC_T}/ISIC_???????.jpg"))),
    ("isic", "three-valued mask", lambda s: three_values(first(s, f"{ISIC_GT}/*.png"))),
    ("isic", "mask of another size", lambda s: other_size(first(s, f"{ISIC_GT}/*.png"))),
    ("isic", "colour mask", lambda s: colour(first(s, f"{ISIC_GT}/*.png"))),
    ("isic", "empty mask", lambda s: empty(first(s, f"{ISIC_GT}/*.png"))),
    ("isic", "orphan mask", lambda s: orphan_mask(s / ISIC_GT, "ISIC_9999999_segmentation.png")),
    ("isic", "symlink loop", lambda s: symlink_loop(s / ISIC_T, "ISIC_7777777.jpg")),
    ("ham10000", "csv without dx column", lambda s: edit_csv(s / HAM_CSV, "image_id,dx,", "image_id,")),
    ("ham10000", "csv unknown dx", lambda s: edit_csv(s / HAM_CSV, ",mel,", ",melanomaX,")),
    ("ham10000", "csv not utf-8", lambda s: edit_first(s, HAM_CSV, b"\xff\xfe\x00garbage\x00\n")),
    ("ham10000", "truncated jpeg", lambda s: truncate(first(s, f"{HAM_IMG}/*.jpg"))),
    ("ham10000", "16-bit mask of labels", lambda s: save_array(first(s, f"{HAM_GT}/*.png"),
                                                               np.full((8, 8), 3000, dtype=np.uint16))),
    ("ham10000", "orphan mask", lambda s: orphan_mask(s / HAM_GT, "ISIC_9999999_segmentation.png")),
    ("acdc", "truncated nifti", lambda s: truncate(first(s, "training/patient002/patient002_frame01.nii.gz"))),
    ("acdc", "nan voxel", lambda s: nifti_with(first(s, "training/patient002/patient002_frame01.nii.gz"), set_nan)),
    ("acdc", "label 7", lambda s: nifti_with(first(s, "training/patient002/patient002_frame01_gt.nii.gz"),
                                             set_label_7)),
    ("acdc", "info garbage", lambda s: text_as(s / "training" / "patient002" / "Info.cfg")),
    ("cardiac-png", "colour image", lambda s: colour(s / "train" / "image" / "cmr2.png")),
    ("cardiac-png", "mask value 9", lambda s: save_array(s / "train" / "mask" / "cmr2_mask.png",
                                                         np.full((96, 96), 9, dtype=np.uint8))),
    ("cardiac-png", "truncated png", lambda s: truncate(s / "train" / "image" / "cmr2.png")),
    ("cardiac-png", "orphan mask", lambda s: orphan_mask(s / "train" / "mask", "cmr99_mask.png")),
    ("cardiac-png", "symlink loop", lambda s: symlink_loop(s / "train" / "image", "cmr77.png")),
    ("sunnybrook", "contour letters", lambda s: text_as(first(s, "contourfiles/*/i-contours/*.txt"))),
    ("sunnybrook", "contour nan", lambda s: edit_first(s, "contourfiles/*/i-contours/*.txt", "1 2\nnan 3\n4 5\n")),
    ("sunnybrook", "truncated dicom", lambda s: truncate(contoured_dicom(s))),
    ("sunnybrook", "ct modality", lambda s: dicom_modality_ct(first(s, "dicoms/*/*.dcm"))),
    ("sunnybrook", "link.csv header", lambda s: edit_csv(s / "link.csv", "patient_id,original_id", "a,b")),
]


@pytest.mark.parametrize(("source", "name", "breaker"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_input_exit_2_one_line_no_output_source_unchanged(raws, tmp_path, capsys, source, name, breaker):
    src = tmp_path / "src"
    shutil.copytree(raws[source], src, symlinks=True)
    culprit = breaker(src)
    before = tree_digest(src)
    out = tmp_path / "out"
    capsys.readouterr()
    code = main([source, "--src", str(src), "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert culprit.name in lines[0], f"{culprit.name} not named in: {lines[0]}"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    assert tree_digest(src) == before


OPTION_CASES = [
    (["--val-ratio", "1.5"], "--val_ratio"),
    (["--test-ratio", "-0.5"], "--test_ratio"),
    (["--val_ratio", "0.6", "--test-ratio", "0.4"], "--val_ratio"),
    (["--val-ratio", "nan"], "--val_ratio"),
    (["--folds", "-2"], "--folds"),
    (["--folds", "1"], "--folds"),
    (["--folds", "50"], "--folds"),
    (["--max-size", "-5"], "--max_size"),
    (["--max-size", "0"], "--max_size"),
    (["--workers", "0"], "--workers"),
    (["--seed", "-1"], "--seed"),
    (["--folds", "three"], "--folds"),
    (["--no-such-option"], "--no-such-option"),
]


@pytest.mark.parametrize(("extra", "option"), OPTION_CASES, ids=[" ".join(c[0]) for c in OPTION_CASES])
def test_out_of_range_options_are_refused_before_any_work(raws, tmp_path, capsys, extra, option, monkeypatch):
    import data_prep.cardiac_png as converter

    def no_work(*args):
        raise AssertionError("conversion started")

    monkeypatch.setattr(converter, "convert_case", no_work)
    out = tmp_path / "out"
    capsys.readouterr()
    try:
        code = main(["cardiac-png", "--src", str(raws["cardiac-png"]), "--out", str(out), *extra])
    except SystemExit as exc:  # argparse's own errors (a value that is not a number, an unknown option)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and option in err and "Traceback" not in err, err
    assert not out.exists()


def test_phantom_count_must_be_positive(tmp_path, capsys):
    assert main(["phantom", "isic", "--out", str(tmp_path / "p"), "--n", "0"]) == 2
    assert "--n 0" in capsys.readouterr().err and not (tmp_path / "p").exists()


def test_symlink_loop_as_src_and_missing_src(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    for src in (loop, tmp_path / "missing"):
        capsys.readouterr()
        assert main(["isic", "--src", str(src), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(src) in err


def _run_cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "data_prep", *args], env=env, capture_output=True, text=True, **kw)


def test_disk_full_on_a_small_tmpfs_blames_the_output(raws, tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("mounting a small tmpfs needs root and unshare; test_disk_full_patched covers the logic")
    mount = tmp_path / "small"
    mount.mkdir()
    src = raws["cardiac-png"]
    before = tree_digest(src)
    for skip in ([], ["--skip-bad"]):
        script = (f"mount -t tmpfs -o size=48k tmpfs {mount} && cd {REPO} && PYTHONPATH={REPO} {sys.executable} -m "
                  f"data_prep cardiac-png --src {src} --out {mount}/out {' '.join(skip)}")
        result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
        if "mount" in result.stderr and "permission denied" in result.stderr.lower():
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, result.stderr
        assert len(lines) == 1 and "no space left" in lines[0] and f"{mount}/out" in lines[0], result.stderr
        assert "cmr" not in lines[0]  # the source image is not blamed
    assert tree_digest(src) == before


@pytest.mark.parametrize("skip_bad", [False, True])
def test_disk_full_patched(raws, tmp_path, capsys, monkeypatch, skip_bad):
    import data_prep.cardiac_png as converter

    calls = {"n": 0}

    def full(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(converter, "link_or_copy", full)
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(["cardiac-png", "--src", str(raws["cardiac-png"]), "--out", str(out)] + (["--skip-bad"] * skip_bad))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no space left on the device of --out" in err, err
    assert str(out) in err and "cmr" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_read_only_out_gives_one_line(raws):
    """Run as an unprivileged user (root ignores permissions): ``os.setuid`` in a child after the imports."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user; as a normal user, chmod covers it")
    work = Path(tempfile.mkdtemp(prefix="dp_ro_", dir="/tmp"))
    try:
        src = work / "src"
        shutil.copytree(raws["cardiac-png"], src)
        locked = work / "locked"
        locked.mkdir()
        for path in [work, *work.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        locked.chmod(0o555)
        code = (
            "import os, sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "import json, multiprocessing, tqdm, PIL.PngImagePlugin, numpy\n"
            # every module the run may import, imported while still root: in a checkout the unprivileged user cannot
            # read (a private mktemp -d folder holding the venv's editable install), importing one after setuid
            # would fail before the tested error
            "import importlib, pkgutil, data_prep, medseg.cli\n"
            "for found in pkgutil.walk_packages(data_prep.__path__, 'data_prep.'):\n"
            "    importlib.import_module(found.name)\n"
            "import data_prep.__main__ as m\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            f"sys.exit(m.main(['cardiac-png', '--src', {str(src)!r}, '--out', {str(locked / 'out')!r}]))\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, result.stderr
        assert len(lines) == 1 and "cannot write the output here" in lines[0] and str(locked) in lines[0], lines
        assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_prints_one_line_exit_130_and_leaves_out_as_it_was(tmp_path, workers):
    from tests.data_prep.test_datalist import _make_src

    src = _make_src(tmp_path / "src", n_groups=4)
    out = tmp_path / "out"
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import data_prep.__main__ as m; "
            "m.CONVERTERS['fake'] = 'tests.data_prep.fake_source'; "
            f"sys.exit(m.main(['fake', '--src', {str(src)!r}, '--out', {str(out)!r}, '--workers', {workers!r}]))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0
    before = tree_digest(out)
    (src / "g03__c011.txt").write_text("SLEEP\n")
    # SIGINT at its default, as in a terminal: a test run started in the background without job control (`cmd &`)
    # ignores SIGINT, and its children would inherit that
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not list(tmp_path.glob(".out.partial-*/images/c010.png")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    os.killpg(child.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted: --out is left as it was"], err
    assert tree_digest(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
