"""Cardiac indices against the true volumes of the ACDC phantoms, the rules that leave indices out, and agreement."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medseg.clinical import (
    CardiacLabels,
    PatientIndices,
    SliceMask,
    agreement,
    clinical_readout,
    patient_indices,
    slices_from_volume,
)
from tests.medseg.clinical.phantom_truth import REL_TOL, assert_close_to_truth, indices_of, phantom_truth


@pytest.fixture(scope="module")
def truth():
    return phantom_truth(13, seed=3)  # 13 patients: every pathology group (drawn in runs of three)


def test_phantom_volumes_known_by_construction(truth):
    slices = [
        s for pid, d in truth.items() for phase in ("ED", "ES")
        for s in slices_from_volume(d["labels"][phase], d["spacing"], pid, phase)
    ]
    results = patient_indices(slices)
    assert [r.patient for r in results] == sorted(truth)
    for result in results:
        assert not result.notes
        assert_close_to_truth(result.values, indices_of(truth, result.patient), result.patient)
    # the groups differ as drawn: dilated (DCM) hearts eject least, hypertrophic (HCM) ones have the heaviest walls
    ef = {r.patient: r.values["LV_EF"] for r in results}
    groups = {pid: ("NOR", "DCM", "HCM", "MINF", "RV")[(i // 3) % 5] for i, pid in enumerate(sorted(truth))}
    by_group = {g: np.mean([ef[p] for p in ef if groups[p] == g]) for g in set(groups.values())}
    assert by_group["DCM"] == min(by_group.values())


def test_through_data_prep_acdc(tmp_path):
    """Phantom files -> data_prep acdc -> datalist items (group_id, phase, slice, spacing) -> indices."""
    from data_prep.__main__ import main as data_prep_main

    raw, out = tmp_path / "raw", tmp_path / "acdc"
    assert data_prep_main(["phantom", "acdc", "--out", str(raw), "--n", "4", "--seed", "1"]) in (0, None)
    assert data_prep_main(["acdc", "--src", str(raw), "--out", str(out), "--seed", "1"]) in (0, None)
    truth = phantom_truth(4, seed=1)
    datalist = json.loads((out / "datalist.json").read_text())
    items = [i for section in ("training", "validation", "testing") for i in datalist[section]]
    slices = []
    for item in items:
        pid = item["group_id"]
        split = "testing" if int(pid[-3:]) > 100 else "training"
        frame = 1 if item["phase"] == "ED" else truth[pid]["es_frame"]
        source = nib.load(raw / split / pid / f"{pid}_frame{frame:02d}_gt.nii.gz")
        # the replay reproduces the generator's label files exactly
        np.testing.assert_array_equal(np.asarray(source.dataobj), truth[pid]["labels"][item["phase"]])
        label = np.asarray(nib.load(out / item["label"]).dataobj)
        # data_prep acdc records the slice spacing: the source volume's third pixdim, the generator's drawn value
        assert item["slice_thickness"] == pytest.approx(float(source.header.get_zooms()[2]))
        assert item["slice_thickness"] == truth[pid]["spacing"][2]
        slices.append(SliceMask(pid, item["phase"], item["slice"], label, tuple(item["spacing"]),
                                item["slice_thickness"]))
    results = patient_indices(slices)
    assert len(results) == 4
    for result in results:
        assert not result.notes
        assert_close_to_truth(result.values, indices_of(truth, result.patient), result.patient)


def _stack(phase: str, n: int = 5, lv: int = 20, holes=(), patient="p1", thickness: float | None = 8.0):
    """A simple patient: an LV square of side ``lv`` px, a myocardial ring and an RV block in every slice."""
    slices = []
    for z in range(n):
        mask = np.zeros((48, 48), dtype=np.uint8)
        mask[10:14 + lv, 10:14 + lv] = 2
        mask[12:12 + lv, 12:12 + lv] = 3 if z not in holes else 2
        mask[36:44, 4:40] = 1
        slices.append(SliceMask(patient, phase, z, mask, (1.5, 1.5), thickness))
    return slices


def test_hand_computed_indices():
    result = patient_indices(_stack("ED", lv=20) + _stack("ES", lv=10))[0]
    voxel = 1.5 * 1.5 * 8.0 / 1000
    assert result.values["LV_EDV"] == pytest.approx(5 * 400 * voxel)
    assert result.values["LV_ESV"] == pytest.approx(5 * 100 * voxel)
    assert result.values["LV_EF"] == pytest.approx(75.0)
    assert result.values["RV_EF"] == pytest.approx(0.0)
    assert result.values["LV_mass"] == pytest.approx(5 * (24 * 24 - 400) * voxel * 1.05)


def test_patient_without_es_keeps_only_ed_indices():
    result = patient_indices(_stack("ED"))[0]
    assert set(result.values) == {"LV_EDV", "RV_EDV", "LV_mass"}
    assert result.notes == ["no ES frame: the indices that need it are left out"]


def test_missing_slice_leaves_that_frame_out():
    es = [s for s in _stack("ES", lv=10) if s.slice != 2]
    result = patient_indices(_stack("ED") + es)[0]
    assert "LV_ESV" not in result.values and "LV_EF" not in result.values and "LV_EDV" in result.values
    assert result.notes == ["ES: slices [2] missing from the stack; ES volumes left out"]
    # the last slice missing from one frame is found through the other frame (both come from one cine)
    result = patient_indices(_stack("ED") + _stack("ES", n=4))[0]
    assert result.notes == ["ES: slices [4] missing from the stack; ES volumes left out"]
    # or through the datalist's full list of slices, also when the frame is missing it at the end in both
    result = patient_indices(_stack("ED", n=4) + _stack("ES", n=4), expected_slices={("p1", "ED"): set(range(5))})[0]
    assert any("ED: slices [4] missing" in n for n in result.notes)


def test_label_absent_between_slices_leaves_that_structure_out():
    result = patient_indices(_stack("ED", holes=(2,)) + _stack("ES", lv=10))[0]
    assert "LV_EDV" not in result.values and "LV_EF" not in result.values
    assert "RV_EF" in result.values  # the other structures are measured
    assert result.notes == ["ED: LV absent from slices [2] between slices that hold it; its ED volume left out"]


def test_unannotated_and_unknown_thickness():
    ed = [SliceMask(s.patient, s.phase, s.slice, s.mask, s.spacing, s.slice_spacing, annotated=[0, 2, 3])
          for s in _stack("ED")]
    result = patient_indices(ed + _stack("ES"))[0]
    assert "RV_EDV" not in result.values and "LV_EDV" in result.values
    assert "ED: RV not annotated in slices [0, 1, 2, 3, 4]; its ED volume left out" in result.notes
    result = patient_indices(_stack("ED", thickness=None) + _stack("ES"))[0]
    assert not any(k.endswith(("EDV", "EF", "mass")) for k in result.values)
    assert "slice spacing unknown" in result.notes[0] and "--slice_thickness" in result.notes[0]


def test_labels_from_names():
    assert CardiacLabels.from_names(["background", "Left ventricle", "myocardium", "right ventricle"]) == \
        CardiacLabels(rv=3, myo=2, lv=1)
    assert CardiacLabels.from_names(["background", "lesion"]) is None


def test_agreement_statistics():
    expert = [PatientIndices(f"p{i}", {"LV_EF": v}) for i, v in enumerate([50.0, 60.0, 40.0, 55.0])]
    predicted = [PatientIndices(f"p{i}", {"LV_EF": v}) for i, v in enumerate([52.0, 57.0, 45.0, 55.0])]
    predicted.append(PatientIndices("p9", {"LV_EF": 10.0}))  # no expert value: not paired
    row = agreement(predicted, expert)["LV_EF"]
    diff = np.array([2.0, -3.0, 5.0, 0.0])
    assert row["n"] == 4
    assert row["mean_difference"] == pytest.approx(diff.mean())
    assert row["loa_upper"] == pytest.approx(diff.mean() + 1.96 * diff.std(ddof=1))
    assert row["mae"] == pytest.approx(np.abs(diff).mean())
    assert row["pearson_r"] == pytest.approx(np.corrcoef([52, 57, 45, 55], [50, 60, 40, 55])[0, 1])
    assert agreement(predicted, expert)["RV_EF"]["n"] == 0


def test_readout_writes_csv_and_bland_altman(tmp_path):
    expert = _stack("ED", patient="a") + _stack("ES", lv=10, patient="a") + _stack("ED", patient="b") + _stack(
        "ES", lv=12, patient="b") + _stack("ED", lv=16, patient="c") + _stack("ES", lv=8, patient="c")
    predicted = [SliceMask(s.patient, s.phase, s.slice, np.where(s.mask == 2, 3, s.mask) if s.patient == "a"
                           else s.mask, s.spacing, s.slice_spacing) for s in expert]
    readout = clinical_readout(predicted, expert)
    assert readout.table["LV_EDV"]["n"] == 3 and readout.table["LV_EDV"]["mean_difference"] > 0
    assert readout.table["RV_EDV"]["mae"] == 0
    files = readout.write(tmp_path)
    assert files == ["clinical.csv", "figures/bland_altman.png"]
    rows = (tmp_path / "clinical.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("patient,source,LV_EDV (mL)")
    assert readout.metrics()["clinical_RV_EDV_mae"] == 0.0


def test_slices_from_volume_rejects_bad_geometry():
    with pytest.raises(ValueError, match="patient p ED: need a \\(rows, cols, slices\\) mask and three positive"):
        slices_from_volume(np.zeros((4, 4)), (1, 1, 8), "p", "ED")


# ---------------------------------------------------------------- medseg evaluate


@pytest.fixture(scope="module")
def acdc_eval(tmp_path_factory):
    """A converted ACDC phantom (5 patients), whose items carry ``slice_thickness`` as ``data_prep acdc`` records
    it, and predictions = expert masks except patient001's end-systolic LV, whose border in slice 2 is predicted as
    myocardium (a lower ESV)."""
    import shutil

    from data_prep.__main__ import main as data_prep_main

    root = tmp_path_factory.mktemp("acdc_eval")
    raw, out, pred = root / "raw", root / "acdc", root / "pred"
    assert data_prep_main(["phantom", "acdc", "--out", str(raw), "--n", "5", "--seed", "2"]) in (0, None)
    assert data_prep_main(["acdc", "--src", str(raw), "--out", str(out), "--seed", "2"]) in (0, None)
    datalist = json.loads((out / "datalist.json").read_text())
    truth = phantom_truth(5, seed=2)
    datalist["testing"] = datalist["training"] + datalist["validation"] + datalist["testing"]
    for item in datalist["testing"]:
        assert item["slice_thickness"] == truth[item["group_id"]]["spacing"][2]  # recorded by the converter
    (out / "datalist.json").write_text(json.dumps(datalist))
    pred.mkdir()
    for item in datalist["testing"]:
        target = pred / f"{item['case_id']}.nii.gz"
        shutil.copy(out / item["label"], target)
        if item["group_id"] == "patient001" and item["phase"] == "ES" and item["slice"] == 2:
            image = nib.load(target)
            from scipy.ndimage import binary_erosion

            data = np.asarray(image.dataobj).copy()
            lv = data == 3
            data[lv & ~binary_erosion(lv)] = 2  # the LV's border pixels predicted as myocardium
            nib.save(nib.Nifti1Image(data, image.affine, image.header), target)
    return out / "datalist.json", pred, datalist


def test_evaluate_reports_clinical_indices(acdc_eval, tmp_path, capsys):
    from medseg.cli import main

    datalist_path, pred, datalist = acdc_eval
    report = tmp_path / "report"
    code = main(["evaluate", "--pred", str(pred), "--gt", str(datalist_path), "--out", str(report),
                 "--section", "testing", "--surface_distances", "no", "--examples", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "clinical MAE: LV_EF" in printed and "clinical indices of 5 patients" in printed
    summary = json.loads((report / "summary.json").read_text())
    clinical = summary["clinical"]
    assert clinical["files"] == ["clinical.csv", "figures/bland_altman.png"]
    assert (report / "figures" / "bland_altman.png").stat().st_size > 1000
    p1 = clinical["patients"]["patient001"]
    assert p1["predicted"]["LV_ESV"] < p1["expert"]["LV_ESV"] and p1["predicted"]["LV_EF"] > p1["expert"]["LV_EF"]
    for pid in ("patient002", "patient003"):
        assert clinical["patients"][pid]["predicted"] == clinical["patients"][pid]["expert"]
    row = clinical["agreement"]["LV_ESV"]
    assert row["n"] == 5 and row["mean_difference"] < 0
    assert row["mae"] == pytest.approx(-row["mean_difference"])  # one patient off, in one direction
    assert clinical["agreement"]["RV_EDV"]["mae"] == 0
    truth = phantom_truth(5, seed=2)
    assert p1["expert"]["LV_EDV"] == pytest.approx(truth["patient001"]["volumes"][("ED", "LV")], rel=REL_TOL["EDV"])
    html = (report / "report.html").read_text()
    assert "Clinical indices: agreement with the expert" in html and "bland_altman.png" in html


def test_evaluate_leaves_out_what_it_cannot_measure(acdc_eval, tmp_path, capsys):
    """A patient whose ES slices have no prediction, and no slice thickness for another: notes, never guesses."""
    from medseg.cli import main

    datalist_path, pred, datalist = acdc_eval
    data = json.loads(datalist_path.read_text())
    for item in data["testing"]:
        if item["group_id"] == "patient002":
            del item["slice_thickness"]
    edited = datalist_path.parent / "datalist_edited.json"
    edited.write_text(json.dumps(data))
    partial = tmp_path / "pred"
    partial.mkdir()
    for path in pred.iterdir():
        if not path.name.startswith("patient003_ES"):
            (partial / path.name).symlink_to(path)
    report = tmp_path / "report"
    code = main(["evaluate", "--pred", str(partial), "--gt", str(edited), "--out", str(report), "--section",
                 "testing", "--surface_distances", "no", "--examples", "0", "--allow_missing"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "clinical: patient patient003 (predicted) no ES frame: the indices that need it are left out" in printed
    assert "clinical: patient patient002 (predicted) ED: slice spacing unknown" in printed
    patients = json.loads((report / "summary.json").read_text())["clinical"]["patients"]
    assert set(patients["patient003"]["predicted"]) == {"LV_EDV", "RV_EDV", "LV_mass"}
    assert patients["patient002"]["predicted"] == {} and patients["patient002"]["expert"] == {}
    # the expert side of patient003 is left out too: its ES slices were not scored (no prediction to pair with)
    assert "LV_ESV" not in patients["patient003"]["expert"]
