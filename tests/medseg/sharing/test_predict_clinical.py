"""medseg predict on cardiac frames: clinical.csv from the predicted masks of ACDC phantoms, whose volumes are known.

The package is checked as usual, then its network is replaced by one that "predicts" the expert's mask of each
slice: the indices in ``clinical.csv`` must then equal the indices of the expert volumes exactly and the phantoms'
true volumes within the sampling tolerances (``tests/medseg/clinical/phantom_truth.py``).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg import cli
from medseg.clinical import patient_indices, slices_from_volume
from medseg.sharing.predict import predict
from tests.medseg.clinical.phantom_truth import assert_close_to_truth, indices_of, phantom_truth

ACDC_LABELS = {0: "background", 1: "right ventricle", 2: "myocardium", 3: "left ventricle"}
N_PATIENTS, SEED = 5, 4  # patient001-004 in training/, patient101 in testing/


def _expert_path(source: str) -> Path:
    """The expert mask of an input: ``<frame>_gt.nii.gz`` beside an ACDC frame, ``labels/`` for a datalist image."""
    path = Path(source)
    if path.parent.name == "images":
        return path.parent.parent / "labels" / path.name
    return path.with_name(path.name.replace(".nii.gz", "_gt.nii.gz"))


class ExpertModel:
    """Stands in for the package's network: each slice's prediction is the expert's mask of that slice."""

    def __init__(self, labels: dict[int, str] = ACDC_LABELS) -> None:
        self.labels = labels
        self.metadata = {"name": "expert", "version": "0"}

    def segment_many(self, items: list[dict], source: str) -> list[np.ndarray]:
        expert = np.asarray(nib.load(_expert_path(source)).dataobj)
        expert = expert[..., None] if expert.ndim == 2 else expert
        assert expert.shape[2] == len(items)
        for k, item in enumerate(items):  # the slice handed to the network is the one whose expert mask is returned
            assert tuple(item["image"].shape) == expert.shape[:2], (source, k)
        return [expert[..., k].astype(np.uint8) for k in range(len(items))]

    def segment(self, item: dict, source: str) -> np.ndarray:
        return self.segment_many([item], source)[0]


@pytest.fixture
def expert_model(monkeypatch):
    """Replace the checked package's model with :class:`ExpertModel` (the package is still opened and checked)."""
    model = ExpertModel()
    monkeypatch.setattr("medseg.sharing.predict._load", lambda *args, **kwargs: model)
    return model


@pytest.fixture(scope="module")
def acdc_raw(tmp_path_factory) -> Path:
    from data_prep.__main__ import main as data_prep_main

    raw = tmp_path_factory.mktemp("acdc_predict") / "raw"
    assert data_prep_main(["phantom", "acdc", "--out", str(raw), "--n", str(N_PATIENTS), "--seed", str(SEED)]) == 0
    return raw


@pytest.fixture(scope="module")
def truth() -> dict:
    return phantom_truth(N_PATIENTS, seed=SEED)


def _clinical_rows(folder: Path) -> dict[str, dict]:
    with open(folder / "clinical.csv") as f:
        return {row["patient"]: row for row in csv.DictReader(f)}


def _expert_indices(truth: dict, pid: str) -> dict[str, float]:
    """The indices of the expert's label volumes, computed directly."""
    d = truth[pid]
    slices = [s for phase in ("ED", "ES") for s in slices_from_volume(d["labels"][phase], d["spacing"], pid, phase)]
    return patient_indices(slices)[0].values


def test_acdc_folder_indices_equal_known_volumes(acdc_raw, truth, expert_model, grey_package, schema, tmp_path,
                                                  capsys):
    src = tmp_path / "acdc"
    shutil.copytree(acdc_raw, src)
    es_frame = truth["patient002"]["es_frame"]
    for path in (src / "training" / "patient002").glob(f"patient002_frame{es_frame:02d}*.nii.gz"):
        path.unlink()  # patient002 has no ES frame: Info.cfg names it, its files are gone
    out = tmp_path / "out"
    code = cli.main(["predict", "--bundle", str(grey_package), "--input", str(src), "--output", str(out),
                     "--schema", str(schema), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"clinical indices of {N_PATIENTS} patient(s) in {out / 'clinical.csv'}" in printed
    clinical_lines = [line for line in printed.splitlines() if line.startswith("clinical: ")]
    # one clear line for the patient without ES, none for the others
    assert clinical_lines == ["clinical: patient patient002: no ES frame: the indices that need it are left out"]
    # the expert masks are not inputs (and the masks written are the frames')
    masks = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_mask.nii.gz"))
    assert masks and not any("_gt" in m for m in masks)
    assert "training/patient001/patient001_frame01_mask.nii.gz" in masks
    rows = _clinical_rows(out)
    assert sorted(rows) == sorted(truth) and {r["source"] for r in rows.values()} == {"predicted"}
    result_values = {}
    for pid, row in rows.items():
        result_values[pid] = {k.split(" ")[0]: float(v) for k, v in row.items() if k.endswith(")") and v != ""}
    for pid in truth:
        if pid == "patient002":
            continue
        assert rows[pid]["notes"] == ""
        # the same numbers as the expert volumes (4 significant digits in the CSV), and the truth within tolerance
        expert = _expert_indices(truth, pid)
        assert result_values[pid] == pytest.approx(expert, rel=5e-4, abs=5e-3)
        assert_close_to_truth(result_values[pid], indices_of(truth, pid), pid, sv_rel=2e-3)
    assert set(result_values["patient002"]) == {"LV_EDV", "RV_EDV", "LV_mass"}
    assert rows["patient002"]["notes"] == "no ES frame: the indices that need it are left out"
    expected = indices_of(truth, "patient002")
    assert result_values["patient002"]["LV_EDV"] == pytest.approx(expected["LV_EDV"], rel=0.03)


def test_datalist_input_and_missing_slice(acdc_raw, truth, expert_model, grey_package, schema, tmp_path):
    """A data_prep datalist: masks named by case id, slice spacing from the items, a missing slice noted."""
    from data_prep.__main__ import main as data_prep_main

    converted = tmp_path / "acdc"
    assert data_prep_main(["acdc", "--src", str(acdc_raw), "--out", str(converted), "--seed", "0"]) == 0
    datalist = json.loads((converted / "datalist.json").read_text())
    items = [i for section in ("training", "validation", "testing") for i in datalist[section]]
    lost = next(i for i in items if i["group_id"] == "patient003" and i["phase"] == "ES" and i["slice"] == 2)
    (converted / lost["image"]).unlink()  # unreadable: skipped, and patient003's ES stack is incomplete
    out = tmp_path / "out"
    result = predict(grey_package, converted / "datalist.json", out, schema=schema)
    assert (out / "patient001_ED_s00_mask.nii.gz").is_file()  # named by case id, as medseg evaluate matches them
    assert [source for source, _ in result.skipped] == [str((converted / lost["image"]).resolve())]
    by_patient = {p.patient: p for p in result.clinical}
    assert sorted(by_patient) == sorted(truth) and result.clinical_notes == []
    assert by_patient["patient003"].notes == ["ES: slices [2] missing from the stack; ES volumes left out"]
    assert set(by_patient["patient003"].values) == {"LV_EDV", "RV_EDV", "LV_mass"}
    for pid in ("patient001", "patient002", "patient004", "patient101"):
        assert not by_patient[pid].notes
        assert by_patient[pid].values == pytest.approx(_expert_indices(truth, pid))
        assert_close_to_truth(by_patient[pid].values, indices_of(truth, pid), pid)
    assert _clinical_rows(out)["patient003"]["notes"] == by_patient["patient003"].notes[0]

    # one section only; items without slice_thickness (an older conversion) need --slice_thickness
    for item in datalist["testing"]:
        del item["slice_thickness"]
    (converted / "datalist.json").write_text(json.dumps(datalist))
    result = predict(grey_package, converted / "datalist.json", tmp_path / "out2", schema=schema, section="testing")
    assert [p.patient for p in result.clinical] == ["patient101"]
    assert result.clinical[0].values == {} and "slice spacing unknown" in result.clinical[0].notes[0]
    thickness = truth["patient101"]["spacing"][2]
    result = predict(grey_package, converted / "datalist.json", tmp_path / "out3", schema=schema, section="testing",
                     slice_thickness=thickness)
    assert result.clinical[0].values == pytest.approx(_expert_indices(truth, "patient101"))


def test_no_clinical_without_cardiac_labels_or_phases(acdc_raw, monkeypatch, grey_package, schema, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(acdc_raw / "training" / "patient001", src / "patient001")
    model = ExpertModel({0: "background", 1: "rv", 2: "myocardium", 3: "lv"})
    monkeypatch.setattr("medseg.sharing.predict._load", lambda *args, **kwargs: model)
    result = predict(grey_package, src, tmp_path / "out", schema=schema)
    assert result.clinical is None and not (tmp_path / "out" / "clinical.csv").exists()
    assert result.clinical_notes == [
        "indices not computed: the model's labels (background, rv, myocardium, lv) do not name right "
        "ventricle, myocardium and left ventricle"
    ]
    # without Info.cfg nothing says which patient or phase a volume is: no read-out, no note
    (src / "patient001" / "Info.cfg").unlink()
    model.labels = ACDC_LABELS
    result = predict(grey_package, src, tmp_path / "out2", schema=schema)
    assert result.clinical is None and result.clinical_notes == []
    assert not (tmp_path / "out2" / "clinical.csv").exists()


def test_section_only_for_a_datalist(grey_package, schema, tmp_path, acdc_raw):
    from medseg.sharing.errors import SharingError

    with pytest.raises(SharingError, match="--section: applies to a datalist.json input"):
        predict(grey_package, acdc_raw, tmp_path / "out", schema=schema, section="testing")
    with pytest.raises(SharingError, match="--slice_thickness: must be a positive number"):
        predict(grey_package, acdc_raw, tmp_path / "out", schema=schema, slice_thickness=0)
    assert not (tmp_path / "out").exists()
