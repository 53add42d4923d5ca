"""No identifying value in any output byte or log line, even where folders are named after the patient."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from data_prep.__main__ import main
from data_prep.deid import Scrubber
from data_prep.phantoms.sunnybrook import folder_names, identity

SEED = 7
N = 2


def _variants(values: set[str]) -> set[bytes]:
    out = set()
    for value in values:
        for v in (value, value.replace("^", " "), value.replace("^", "_"), value.split("^")[0]):
            if len(v) >= 4:
                out |= {v.encode(), v.lower().encode(), v.upper().encode()}
    return out


def _grep(root: Path, needles: set[bytes]) -> list[str]:
    """``file: value`` for every needle found in any file under ``root`` (``.gz`` decompressed)."""
    hits = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        hits += [f"{path.relative_to(root)}: {n!r}" for n in needles if n in data]
    return hits


@pytest.fixture(scope="module")
def identified_src(tmp_path_factory) -> tuple[Path, set[str]]:
    """A Sunnybrook phantom exported the hospital way: folders named after the patient and the accession."""
    src = tmp_path_factory.mktemp("sb") / "Export_Doe^Jane1"  # even --src itself carries a name
    assert main(["phantom", "sunnybrook", "--out", str(src), "--n", str(N), "--seed", str(SEED)]) == 0
    values, links = set(), ["patient_id,original_id"]
    for index in range(N):
        who = identity(index, SEED)
        values |= set(who.values())
        dicom_folder, contour_folder = folder_names(index)
        new_dicom = f"{who['PatientName']}_{who['PatientID']}"  # e.g. Doe^Jane1_MRN00707301
        new_contour = f"{who['AccessionNumber']}_contours"
        (src / "dicoms" / dicom_folder).rename(src / "dicoms" / new_dicom)
        (src / "contourfiles" / contour_folder).rename(src / "contourfiles" / new_contour)
        links.append(f"{new_dicom},{new_contour}")
    (src / "link.csv").write_text("\n".join(links) + "\n")
    values.discard("Phantom General Hospital")  # not a patient's, and checked separately below
    return src, values


def test_no_identifying_value_in_any_output_byte_or_log_line(identified_src, tmp_path, capsys):
    src, values = identified_src
    assert any(v.startswith("Doe^Jane1") for v in values)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["sunnybrook", "--src", str(src), "--out", str(out), "--folds", "2", "--val-ratio", "0"]) == 0
    log = capsys.readouterr().err
    assert not _grep(out, _variants(values) | {b"Phantom General Hospital"})
    assert not [v for v in _variants(values) if v.decode() in log]
    provenance = json.loads((out / "provenance.json").read_text())
    paths = [r["path"] for records in provenance["cases"].values() for r in records]
    assert paths and all(not Path(p).is_absolute() for p in paths)
    # the identifying folders became the case's pseudonym; the rest of the path is kept
    for case_id, records in provenance["cases"].items():
        image = next(r["path"] for r in records if r["role"] == "image")
        assert image.split("/")[:2] == ["dicoms", case_id.split("_")[0]], image


def test_bad_cases_and_error_lines_are_scrubbed_too(identified_src, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(identified_src[0], src)
    values = identified_src[1]
    broken = sorted(src.glob("contourfiles/*/i-contours/*.txt"))[0]
    broken.write_text("1 2 3\n")
    dicom = sorted(src.glob("dicoms/*/*.dcm"))[0]
    dicom.write_bytes(dicom.read_bytes()[:300])  # truncated: the header that names it cannot be read
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["sunnybrook", "--src", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
    assert not [v for v in _variants(values) if v.decode() in err], err
    assert main(["sunnybrook", "--src", str(src), "--out", str(out), "--skip-bad", "--folds", "2"]) == 0
    log = capsys.readouterr().err
    bad = json.loads((out / "bad_cases.json").read_text())
    assert len(bad) >= 1 and not _grep(out, _variants(values))
    assert not [v for v in _variants(values) if v.decode() in log]


def test_a_ct_series_is_refused_by_the_mri_converter_unless_allowed(identified_src, tmp_path, capsys):
    import pydicom

    src = tmp_path / "src"
    shutil.copytree(identified_src[0], src)
    for path in sorted(src.glob("dicoms/*/*.dcm"))[:3]:
        ds = pydicom.dcmread(path)
        ds.Modality = "CT"
        ds.save_as(path)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["sunnybrook", "--src", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Modality is CT" in err and "--allow_modality" in err and not out.exists()
    assert not [v for v in _variants(identified_src[1]) if v.decode() in err], err
    assert main(["sunnybrook", "--src", str(src), "--out", str(out), "--allow-modality", "--folds", "2"]) == 0


def test_scrubber_matches_components_equal_to_or_containing_a_value():
    scrub = Scrubber({"Doe^Jane", "MRN0042", "12"})
    assert scrub.path("dicoms/Doe^Jane_MRN0042/IM1.dcm", "sb01") == "dicoms/sb01/IM1.dcm"
    assert scrub.path("x/JANE DOE/12/IM-0012.dcm", "sb01") == "x/sb01/sb01/IM-0012.dcm"  # "12" only whole
    assert scrub.text("cannot read /data/mrn0042/a.dcm") == "cannot read /data/[redacted]/a.dcm"
    assert not Scrubber().path("a/b", "p") != "a/b"
