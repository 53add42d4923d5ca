"""The Sunnybrook converter: rasterised contours, `annotated`, pseudonyms, de-identification, bad inputs."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_prep.__main__ import main

SPLITS = ("training", "validation", "testing")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _all_items(out: Path) -> list[dict]:
    datalist = json.loads((out / "datalist.json").read_text())
    return [item for split in SPLITS for item in datalist[split]]


def _identifying_values(src: Path) -> set[str]:
    """PatientName, PatientID, PatientBirthDate and InstitutionName of every DICOM under ``src``."""
    import pydicom

    values = set()
    for path in src.glob("dicoms/*/*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for key in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName"):
            value = str(ds.get(key) or "").strip()
            if value:
                values.add(value)
    return values


def _assert_deidentified(out: Path, values: set[str], allowed_in_provenance: set[str] = frozenset()) -> None:
    """No identifying value in any output file's bytes (``.nii.gz`` decompressed too)."""
    for path in out.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        for value in values:
            if path.name == "provenance.json" and value in allowed_in_provenance:
                continue  # dataset folder names in source paths (see docs)
            assert value.encode() not in data, f"{value!r} found in {path}"
            assert value.replace("^", " ").encode() not in data, f"{value!r} found in {path}"


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sunnybrook") / "raw"
    assert main(["phantom", "sunnybrook", "--out", str(root), "--n", "3", "--seed", "5"]) == 0
    return root


@pytest.fixture(scope="module")
def converted(raw) -> Path:
    out = raw.parent / "out"
    assert main(["sunnybrook", "--src", str(raw), "--out", str(out), "--folds", "2", "--val-ratio", "0.34"]) == 0
    return out


def test_items_masks_spacing_and_annotated(raw, converted):
    import nibabel as nib
    import pydicom

    items = _all_items(converted)
    i_contours = sorted(raw.glob("contourfiles/*/i-contours/*.txt"))
    o_numbers = {(p.parts[-3], p.name[8:12]) for p in raw.glob("contourfiles/*/o-contours/*.txt")}
    assert len(items) == len(i_contours) < len(list(raw.glob("dicoms/*/*.dcm")))  # contoured images only
    assert sum(i["annotated"] == [2, 3] for i in items) == len(o_numbers) < len(items)
    links = dict(line.split(",") for line in (raw / "link.csv").read_text().splitlines()[1:])
    by_id = {i["case_id"]: i for i in items}
    for folder in links:
        from data_prep.sunnybrook import pseudonym

        for item in (i for i in items if i["group_id"] == pseudonym(folder)):
            number = int(item["case_id"].rsplit("_im", 1)[1])
            ds = pydicom.dcmread(raw / "dicoms" / folder / f"{number}.dcm")
            assert item["spacing"] == pytest.approx([float(s) for s in ds.PixelSpacing])
            image, label = nib.load(converted / item["image"]), nib.load(converted / item["label"])
            assert np.array_equal(np.asanyarray(image.dataobj), ds.pixel_array)
            assert np.allclose(image.header.get_zooms(), item["spacing"], atol=1e-5)
            assert np.allclose(label.header.get_zooms(), item["spacing"], atol=1e-5)
            mask = np.asanyarray(label.dataobj)
            has_o = (links[folder], f"{number:04d}") in o_numbers
            assert set(np.unique(mask).tolist()) == ({0, 2, 3} if has_o else {0, 3})
            assert item["annotated"] == ([2, 3] if has_o else [3])
            assert by_id[item["case_id"]] is item


def test_pseudonyms_grouping_and_no_identifying_values(raw, converted):
    items = _all_items(converted)
    values = _identifying_values(raw)
    assert len(values) >= 7  # three names, three ids, birth dates, one institution
    folders = {p.name for p in raw.glob("dicoms/*")}
    for item in items:
        assert not any(v in item["case_id"] or v in item["group_id"] for v in values | folders)
    _assert_deidentified(converted, values | {"Phantom General Hospital"})
    split_of, fold_of = {}, {}
    for split in SPLITS:
        for item in json.loads((converted / "datalist.json").read_text())[split]:
            assert split_of.setdefault(item["group_id"], split) == split
            assert fold_of.setdefault(item["group_id"], item["fold"]) == item["fold"]
    assert len(split_of) == 3 and len(set(split_of.values())) > 1


def test_datalist_loads_with_monai_and_output_is_reproducible(raw, converted, tmp_path):
    from monai.data import load_decathlon_datalist

    for item in load_decathlon_datalist(str(converted / "datalist.json"), True, "training"):
        assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
    args = ["--folds", "2", "--val-ratio", "0.34"]
    assert main(["sunnybrook", "--src", str(raw), "--out", str(tmp_path / "again"), *args]) == 0
    assert _files(tmp_path / "again") == _files(converted)


def test_polygon_fill_convention():
    from data_prep.sunnybrook import fill_polygon

    # integer coordinates are pixel centres; the outline's pixels are inside
    mask = fill_polygon([(1, 2), (4, 2), (4, 5), (1, 5)], (8, 8))
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 5, 1, 4) and mask.sum() == 16


def test_real_sample(shared_data, tmp_path):
    src = shared_data / "sunnybrook_sample"
    if not src.is_dir():
        pytest.skip("sunnybrook_sample not present")
    out = tmp_path / "out"
    assert main(["sunnybrook", "--src", str(src), "--out", str(out)]) == 0
    items = _all_items(out)
    assert len(items) == len(list(src.glob("contourfiles/*/i-contours/*.txt")))
    assert len({i["group_id"] for i in items}) == 3
    assert any(i["annotated"] == [3] for i in items) and any(i["annotated"] == [2, 3] for i in items)
    import nibabel as nib

    for item in items:
        mask = np.asanyarray(nib.load(out / item["label"]).dataobj)
        assert set(np.unique(mask).tolist()) <= {0, *item["annotated"]} and 3 in mask
    folders = {p.name for p in src.glob("dicoms/*")}
    values = _identifying_values(src)
    # the real headers carry the dataset id as name and id: allowed only as folder names in provenance.json
    assert not any(v in item["case_id"] or v in item["group_id"] for item in items for v in values | folders)
    _assert_deidentified(out, values, allowed_in_provenance=folders)


def _contour(raw: Path, kind: str = "i") -> Path:
    return sorted(raw.glob(f"contourfiles/SC-HF-I-1/{kind}-contours/*.txt"))[0]


def _odd_tokens(src: Path) -> Path:
    path = _contour(src)
    path.write_text(path.read_text() + "12.5\n")
    return path


def _not_a_number(src: Path) -> Path:
    path = _contour(src)
    path.write_text("40.0 41.0\nabc 42.0\n45.0 45.0\n")
    return path


def _too_few_points(src: Path) -> Path:
    path = _contour(src, "o")
    path.write_text("40.0 41.0\n42.0 42.0\n")
    return path


def _point_outside(src: Path) -> Path:
    path = _contour(src)
    path.write_text(path.read_text() + "500.0 20.0\n")
    return path


def _missing_dicom(src: Path) -> Path:
    path = _contour(src)
    (src / "dicoms" / "SCD0000101" / f"{int(path.name[8:12])}.dcm").unlink()
    return path


def _unreadable_dicom(src: Path) -> Path:
    path = _contour(src)
    dicom = src / "dicoms" / "SCD0000101" / f"{int(path.name[8:12])}.dcm"
    dicom.write_bytes(b"not a dicom file at all")
    return dicom


@pytest.mark.parametrize(
    "breaker", [_odd_tokens, _not_a_number, _too_few_points, _point_outside, _missing_dicom, _unreadable_dicom]
)
def test_bad_input_is_reported_and_can_be_skipped(raw, tmp_path, capsys, breaker):
    src = tmp_path / "src"
    shutil.copytree(raw, src)
    bad_file = breaker(src)
    out = tmp_path / "out"
    assert main(["sunnybrook", "--src", str(src), "--out", str(out)]) != 0
    assert str(bad_file) in capsys.readouterr().err
    assert not (out / "datalist.json").exists()
    assert main(["sunnybrook", "--src", str(src), "--out", str(out), "--skip-bad"]) == 0
    bad = json.loads((out / "bad_cases.json").read_text())
    assert [b["file"] for b in bad] == [bad_file.relative_to(src).as_posix()]
    assert len(_all_items(out)) == len(list(raw.glob("contourfiles/*/i-contours/*.txt"))) - 1


@pytest.mark.parametrize(
    "content,problem",
    [(None, "link.csv not found"), ("dicom,contours\nSCD0000101,SC-HF-I-1\n", "header"),
     ("patient_id,original_id\nSCD0000101\n", "line 2"), ("patient_id,original_id\n", "lists no patient")],
)
def test_bad_link_csv(raw, tmp_path, capsys, content, problem):
    src = tmp_path / "src"
    shutil.copytree(raw, src)
    if content is None:
        (src / "link.csv").unlink()
    else:
        (src / "link.csv").write_text(content)
    assert main(["sunnybrook", "--src", str(src), "--out", str(tmp_path / "out"), "--skip-bad"]) != 0
    err = capsys.readouterr().err
    assert str(src / "link.csv") in err and problem in err
    assert not (tmp_path / "out" / "datalist.json").exists()
