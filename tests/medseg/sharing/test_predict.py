"""medseg predict: masks in the input's format and geometry, findings.csv, refusals that leave nothing behind."""

from __future__ import annotations

import csv
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg import cli
from medseg.sharing.errors import SharingError
from medseg.sharing.predict import predict
from tests.medseg.sharing.conftest import write_rgb_images


def _rows(folder):
    with open(folder / "findings.csv") as f:
        return list(csv.DictReader(f))


def test_images_keep_their_size_and_bad_files_are_skipped(rgb_package, schema, tmp_path):
    inputs = tmp_path / "in"
    write_rgb_images(inputs, sizes=((40, 50), (37, 61), (33, 29)))
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(inputs / "grey.png")
    (inputs / "broken.jpg").write_bytes(b"not a jpeg")
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    result = predict(rgb_package, inputs, tmp_path / "out", overlay=True, schema=schema)
    out = tmp_path / "out"
    for i, (h, w) in enumerate(((40, 50), (37, 61), (33, 29))):
        mask = np.asarray(Image.open(out / f"img{i}_mask.png"))
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        assert Image.open(out / f"img{i}_overlay.png").size == (w, h)
    rows = {r["input"]: r for r in _rows(out)}
    assert len(rows) == 3
    row = rows[str(inputs / "img0.png")]
    mask0 = np.asarray(Image.open(out / "img0_mask.png"))
    assert int(row["lesion_area_px"]) == int((mask0 > 0).sum()) and row["lesion_area_mm2"] == ""
    skipped = dict(result.skipped)
    assert "greyscale" in skipped[str(inputs / "grey.png")] and "RGB" in skipped[str(inputs / "grey.png")]
    assert "cannot be read" in skipped[str(inputs / "broken.jpg")]
    assert (out / "skipped.csv").is_file()
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before  # inputs untouched


def test_nifti_volume_keeps_affine_and_reports_volume(grey_package, schema, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    affine = np.array([[0, -1.5, 0, 10], [1.5, 0, 0, -5], [0, 0, 8, 2], [0, 0, 0, 1]], dtype=float)
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.random((20, 24, 3)).astype(np.float32), affine), inputs / "vol.nii.gz")
    nib.save(nib.Nifti1Image(rng.random((20, 24)).astype(np.float32), affine), inputs / "slice.nii")
    predict(grey_package, inputs, tmp_path / "out", schema=schema)
    vol = nib.load(tmp_path / "out" / "vol_mask.nii.gz")
    assert vol.shape == (20, 24, 3) and np.allclose(vol.affine, affine)
    assert nib.load(tmp_path / "out" / "slice_mask.nii.gz").shape == (20, 24)
    data = np.asarray(vol.dataobj)
    total = next(r for r in _rows(tmp_path / "out") if r["slice"] == "all")
    for value, name in ((1, "rv"), (2, "myocardium"), (3, "lv")):
        count = int((data == value).sum())
        assert int(total[f"{name}_area_px"]) == count
        assert float(total[f"{name}_volume_ml"]) == pytest.approx(count * 1.5 * 1.5 * 8 / 1000, abs=1e-3)
    assert not (tmp_path / "out" / "clinical.csv").exists()  # no patient or phase known: no clinical read-out


@pytest.mark.realdata
def test_dicom_series(grey_package, schema, shared_data, tmp_path):
    series = tmp_path / "in" / "SCD0000101"
    series.mkdir(parents=True)
    for path in sorted((shared_data / "sunnybrook_sample" / "dicoms" / "SCD0000101").glob("*.dcm"))[:3]:
        shutil.copy(path, series)
    predict(grey_package, tmp_path / "in", tmp_path / "out", schema=schema)
    mask = nib.load(tmp_path / "out" / "SCD0000101_mask.nii.gz")
    assert mask.shape == (256, 256, 3)
    import highdicom as hd

    # these three images are in three frames of reference (two cine phases at one position): one SEG each
    segs = sorted((tmp_path / "out").glob("SCD0000101_seg_part*.dcm"))
    assert len(segs) == 3
    for path in segs:
        seg = hd.seg.segread(path)  # de-identified dates (00000000) are left empty
        assert seg.PatientBirthDate == "" and len(seg.SegmentSequence) == 3
    assert np.allclose(
        np.abs(np.linalg.det(mask.affine[:3, :2].T @ mask.affine[:3, :2])) ** 0.5, 1.367188**2, rtol=1e-4
    )
    rows = _rows(tmp_path / "out")
    assert rows[0]["spacing_mm"].startswith("1.36719x1.36719") and float(rows[0]["lv_area_mm2"]) >= 0


def test_refuses_output_inside_input(rgb_package, schema, tmp_path):
    write_rgb_images(tmp_path / "in")
    for output in (tmp_path / "in", tmp_path / "in" / "masks"):
        with pytest.raises(SharingError, match="inside the input folder"):
            predict(rgb_package, tmp_path / "in", output, schema=schema)
    with pytest.raises(SharingError, match="inside the input folder"):
        predict(rgb_package, tmp_path / "in" / "img0.png", tmp_path / "in", schema=schema)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["img0.png", "img1.png"]


def test_refuses_non_empty_or_unwritable_output(rgb_package, schema, tmp_path):
    write_rgb_images(tmp_path / "in")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(SharingError, match="not an empty folder"):
        predict(rgb_package, tmp_path / "in", tmp_path / "full", schema=schema)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(SharingError, match="cannot be written"):
        predict(rgb_package, tmp_path / "in", tmp_path / "a_file" / "out", schema=schema)
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere: the read-only folder case needs a normal user")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(SharingError, match="cannot be written"):
            predict(rgb_package, tmp_path / "in", locked / "out", schema=schema)
    finally:
        locked.chmod(0o700)


def test_bundle_without_manifest_refused_without_trust(bundle_copy, schema, tmp_path, monkeypatch, capsys):
    path = bundle_copy / "configs" / "inference.json"
    config = json.loads(path.read_text())
    config["handlers"].append({"_target_": "builtins.print", "_mode_": "callable"})
    path.write_text(json.dumps(config))
    write_rgb_images(tmp_path / "in")
    monkeypatch.setitem(cli.COMMANDS, "predict", ("medseg.commands.predict", "predict"))
    args = ["predict", "--bundle", str(bundle_copy), "--input", str(tmp_path / "in"), "--schema", str(schema)]
    assert cli.main([*args, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no manifest.json" in err and "--trust" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert cli.main([*args, "--output", str(tmp_path / "out"), "--trust", "--device", "cpu"]) == 0
    assert "warning: --trust" in capsys.readouterr().err
    assert (tmp_path / "out" / "img0_mask.png").is_file()


def test_tampered_weights_refused(package_copy, schema, tmp_path):
    weights = package_copy / "models" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    write_rgb_images(tmp_path / "in")
    with pytest.raises(SharingError, match="models/model.safetensors: sha256 does not match"):
        predict(package_copy, tmp_path / "in", tmp_path / "out", schema=schema)
    assert not (tmp_path / "out").exists()


def test_input_with_nothing_to_segment(rgb_package, schema, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    with pytest.raises(SharingError, match="holds no image"):
        predict(rgb_package, tmp_path / "in", tmp_path / "out", schema=schema)
