"""The ACDC converter on its phantom: 2D NIfTI slices, spacing and slice thickness, patient grouping, official splits,
bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_prep.__main__ import main

SPLITS = ("training", "validation", "testing")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("acdc") / "raw"
    assert main(["phantom", "acdc", "--out", str(root), "--n", "8", "--seed", "1"]) == 0
    return root


@pytest.fixture(scope="module")
def converted(raw) -> Path:
    out = raw.parent / "out"
    assert main(["acdc", "--src", str(raw), "--out", str(out), "--folds", "2"]) == 0
    return out


def test_slices_spacing_and_labels(raw, converted):
    import nibabel as nib

    from tests.medseg.clinical.phantom_truth import phantom_truth

    truth = phantom_truth(8, seed=1)  # the fixture's phantoms: each patient's (row, column, slice) spacing
    datalist = json.loads((converted / "datalist.json").read_text())
    items = [item for split in SPLITS for item in datalist[split]]
    expected = sum(nib.load(p).shape[2] for p in raw.glob("*/patient*/patient*_frame??.nii.gz"))
    assert len(items) == expected == len({i["case_id"] for i in items})
    assert datalist["labels"] == {"0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle"}
    all_labels = set()
    for item in items:
        patient = item["group_id"]
        source = nib.load(next(raw.glob(f"*/{patient}/{patient}_frame01.nii.gz")))
        assert item["spacing"] == pytest.approx([float(z) for z in source.header.get_zooms()[:2]])
        # the distance between slice centres: the volume's third pixdim, the generator's drawn slice spacing
        assert item["slice_thickness"] == pytest.approx(float(source.header.get_zooms()[2]))
        assert item["slice_thickness"] == truth[patient]["spacing"][2]
        assert item["case_id"] == f"{patient}_{item['phase']}_s{item['slice']:02d}" and item["phase"] in ("ED", "ES")
        info = (raw / source.get_filename().split("/")[-3] / patient / "Info.cfg").read_text()
        assert f"Group: {item['class']}\n" in info
        image, label = nib.load(converted / item["image"]), nib.load(converted / item["label"])
        assert image.shape == label.shape == (64, 64)
        assert image.get_data_dtype() in (np.int16, np.float32) and label.get_data_dtype() == np.uint8
        assert np.allclose(image.header.get_zooms(), item["spacing"]) and np.allclose(image.affine[:2, :2],
                                                                                     np.diag(item["spacing"]))
        all_labels |= set(np.unique(np.asanyarray(label.dataobj)).tolist())
    assert all_labels == {0, 1, 2, 3}
    # slice z of the written image is slice z of the source volume
    item = next(i for i in datalist["training"] if i["phase"] == "ED" and i["slice"] == 3)
    patient = item["group_id"]
    source = nib.load(next(raw.glob(f"*/{patient}/{patient}_frame01.nii.gz")))
    assert np.array_equal(np.asanyarray(nib.load(converted / item["image"]).dataobj),
                          np.asanyarray(source.dataobj)[:, :, 3])


def test_patients_stay_together_and_official_splits_are_kept(converted):
    datalist = json.loads((converted / "datalist.json").read_text())
    split_of, fold_of = {}, {}
    for split in SPLITS:
        for item in datalist[split]:
            assert split_of.setdefault(item["group_id"], split) == split
            assert fold_of.setdefault(item["group_id"], item["fold"]) == item["fold"]
    assert {g for g, s in split_of.items() if s == "testing"} == {"patient101", "patient102"}
    assert datalist["validation"] and {i["fold"] for i in datalist["training"]} == {0, 1}
    assert all("label" in i for split in SPLITS for i in datalist[split])  # testing keeps its labels


def test_datalist_loads_with_monai_and_output_is_reproducible(raw, converted, tmp_path):
    from monai.data import load_decathlon_datalist

    for split in SPLITS:
        for item in load_decathlon_datalist(str(converted / "datalist.json"), True, split):
            assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
    assert main(["acdc", "--src", str(raw), "--out", str(tmp_path / "again"), "--folds", "2"]) == 0
    assert _files(tmp_path / "again") == _files(converted)


def test_flat_folder_and_testing_without_labels(raw, tmp_path):
    flat = tmp_path / "flat"
    for folder in raw.glob("*/patient*"):
        shutil.copytree(folder, flat / folder.name)
    for gt in (flat / "patient101").glob("*_gt.nii.gz"):
        gt.unlink()  # unlabelled in a flat folder is not testing: an error
    info = flat / "patient001" / "Info.cfg"  # no Group (as in the 2017 test set): accepted, items get no class
    info.write_text("".join(line for line in info.read_text().splitlines(True) if not line.startswith("Group")))
    assert main(["acdc", "--src", str(flat), "--out", str(tmp_path / "out"), "--skip-bad"]) == 0
    bad = json.loads((tmp_path / "out" / "bad_cases.json").read_text())
    assert {b["case_id"] for b in bad} == {"patient101_ED", "patient101_ES"}
    datalist = json.loads((tmp_path / "out" / "datalist.json").read_text())
    items = [i for split in SPLITS for i in datalist[split]]
    assert {("class" in i) for i in items if i["group_id"] == "patient001"} == {False}
    assert {("class" in i) for i in items if i["group_id"] == "patient002"} == {True}
    testing_copy = tmp_path / "official"
    shutil.copytree(raw, testing_copy)
    for gt in (testing_copy / "testing" / "patient101").glob("*_gt.nii.gz"):
        gt.unlink()
    assert main(["acdc", "--src", str(testing_copy), "--out", str(tmp_path / "out2")]) == 0
    testing = json.loads((tmp_path / "out2" / "datalist.json").read_text())["testing"]
    assert {("label" in i) for i in testing if i["group_id"] == "patient101"} == {False}
    assert {("label" in i) for i in testing if i["group_id"] == "patient102"} == {True}


def _break_gt_missing(patient: Path) -> Path:
    gt = patient / f"{patient.name}_frame01_gt.nii.gz"
    gt.unlink()
    return gt


def _break_gt_shape(patient: Path) -> Path:
    import nibabel as nib

    gt = patient / f"{patient.name}_frame01_gt.nii.gz"
    nib.Nifti1Image(np.zeros((32, 64, 3), np.uint8), np.eye(4)).to_filename(gt)
    return gt


def _break_gt_values(patient: Path) -> Path:
    import nibabel as nib

    gt = patient / f"{patient.name}_frame01_gt.nii.gz"
    img = nib.load(gt)
    data = np.asanyarray(img.dataobj).copy()
    data[0, 0, 0] = 7
    nib.Nifti1Image(data, img.affine).to_filename(gt)
    return gt


def _break_info_missing(patient: Path) -> Path:
    (patient / "Info.cfg").unlink()
    return patient / "Info.cfg"


def _break_info_no_es(patient: Path) -> Path:
    info = patient / "Info.cfg"
    info.write_text("\n".join(line for line in info.read_text().splitlines() if not line.startswith("ES")))
    return info


def _break_info_wrong_frame(patient: Path) -> Path:
    info = patient / "Info.cfg"
    info.write_text(info.read_text().replace("ED: 1\n", "ED: 4\n"))
    return patient / f"{patient.name}_frame04.nii.gz"


def _break_info_garbage(patient: Path) -> Path:
    info = patient / "Info.cfg"
    info.write_text("this is not a config\n")
    return info


def _break_info_unknown_group(patient: Path) -> Path:
    info = patient / "Info.cfg"
    info.write_text(info.read_text().replace("Group: ", "Group: X"))
    return info


def _break_corrupt_nifti(patient: Path) -> Path:
    image = patient / f"{patient.name}_frame01.nii.gz"
    image.write_bytes(image.read_bytes()[:200])
    return image


@pytest.mark.parametrize(
    "breaker",
    [_break_gt_missing, _break_gt_shape, _break_gt_values, _break_info_missing, _break_info_no_es,
     _break_info_wrong_frame, _break_info_garbage, _break_info_unknown_group, _break_corrupt_nifti],
)
def test_bad_input_is_reported_and_can_be_skipped(raw, tmp_path, capsys, breaker):
    src = tmp_path / "src"
    shutil.copytree(raw, src)
    bad_file = breaker(src / "training" / "patient002")
    out = tmp_path / "out"
    assert main(["acdc", "--src", str(src), "--out", str(out)]) != 0
    assert str(bad_file) in capsys.readouterr().err
    assert not (out / "datalist.json").exists()
    assert main(["acdc", "--src", str(src), "--out", str(out), "--skip-bad"]) == 0
    bad = json.loads((out / "bad_cases.json").read_text())
    assert bad_file.relative_to(src).as_posix() in {b["file"] for b in bad}
    assert {b["case_id"][:10] for b in bad} == {"patient002"}
    datalist = json.loads((out / "datalist.json").read_text())
    kept = {i["case_id"].rsplit("_", 1)[0] for split in SPLITS for i in datalist[split]}
    assert kept.isdisjoint(b["case_id"] for b in bad) and "patient001_ED" in kept
