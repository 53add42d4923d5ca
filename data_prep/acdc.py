"""ACDC (Automated Cardiac Diagnosis Challenge) short-axis cine MRI -> 2D NIfTI slices.

Expected layout (the official release; a flat folder of ``patientXXX/`` works too)::

    SRC/training/patient001/Info.cfg                       ED: 1, ES: 12, Group: DCM|HCM|MINF|NOR|RV, ...
    SRC/training/patient001/patient001_frame01.nii.gz      volume (X, Y, Z) at the ED frame
    SRC/training/patient001/patient001_frame01_gt.nii.gz   labels 0..3 of that frame
    SRC/training/patient001/patient001_frame12.nii.gz      ES frame (+ _gt)
    SRC/testing/patient101/...                              official test patients (labels kept when present)

One case is a patient's ED or ES frame; each of its short-axis slices ``z`` becomes one item
``images/patient001_ED_s03.nii.gz`` + ``labels/patient001_ED_s03.nii.gz``: the 2D array ``volume[:, :, z]``
(axis 0 = NIfTI X), with the in-plane voxel size in the affine and pixdim, ``spacing`` =
[axis 0 mm, axis 1 mm] in the item, and ``slice_thickness`` = the distance between slice centres (mm, the
volume's third pixdim) for the cardiac volumes (:mod:`medseg.clinical`). All slices and both frames of a patient
share ``group_id`` so that they land in one split and one fold; the splits are stratified by the ACDC group (also
the item ``class``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from data_prep.datalist import Case
from data_prep.errors import DataPrepError
from data_prep.imageio import check_label_values, index_files, read_nifti, write_nifti_2d

NAME = "acdc"
DESCRIPTION = "ACDC cardiac cine MRI, ED and ES frames cut into 2D short-axis slices (RV, myocardium, LV)."
MODALITY = {"0": "MRI"}
LABELS = {"0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle"}
SOURCE = "ACDC, Bernard et al., IEEE TMI 2018 (https://www.creatis.insa-lyon.fr/Challenge/acdc/)"

GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")
OFFICIAL_SPLITS = {"training": "training", "testing": "testing"}
_PATIENT = re.compile(r"^patient\d+$")


def parse_info(path: Path) -> dict[str, str]:
    """Read a patient's ``Info.cfg`` (``key: value`` lines) and check that it names the ED and ES frames.

    Args:
        path: the ``Info.cfg`` file.

    Returns:
        key -> value, with at least ``ED`` and ``ES`` (positive integers as text). ``Group`` may be absent
        (the original 2017 test set has none) but when present is one of :data:`GROUPS`.

    Raises:
        DataPrepError: the file is missing, has a line that is not ``key: value``, lacks ED or ES, or names
            an unknown Group.
    """
    if not path.is_file():
        raise DataPrepError(path, "Info.cfg not found", "every ACDC patient folder needs its Info.cfg (ED, ES, Group)")
    info: dict[str, str] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise DataPrepError(path, f"line {number} is not 'key: value': {line[:60]!r}", "fix or restore Info.cfg")
        info[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        if not info.get(key, "").isdigit() or int(info[key]) < 1:
            raise DataPrepError(
                path, f"{key} is missing or not a frame number ({info.get(key)!r})", f"add a line '{key}: <frame>'"
            )
    if "Group" in info and info["Group"] not in GROUPS:
        raise DataPrepError(path, f"unknown Group {info['Group']!r}", f"write 'Group: <one of {', '.join(GROUPS)}>'")
    return info


def _find(folder: Path, name: str) -> Path:
    """``folder / name``, matched case-insensitively (hidden files ignored); the exact path when absent."""
    try:
        return index_files(folder).get(name.lower(), folder / name)
    except DataPrepError:
        return folder / name


def _frame_paths(folder: Path, frame: int) -> tuple[Path, Path]:
    stem = f"{folder.name}_frame{frame:02d}"
    return _find(folder, f"{stem}.nii.gz"), _find(folder, f"{stem}_gt.nii.gz")


def _patient_folders(src: Path) -> list[tuple[Path, str | None]]:
    """(patient folder, official split or None) for every ``patientXXX`` folder."""
    official = [src / name for name in OFFICIAL_SPLITS if (src / name).is_dir()]
    if official:
        return [
            (p, OFFICIAL_SPLITS[root.name])
            for root in official
            for p in sorted(root.iterdir())
            if p.is_dir() and _PATIENT.match(p.name)
        ]
    return [(p, None) for p in sorted(src.iterdir()) if p.is_dir() and _PATIENT.match(p.name)]


def find_cases(src: Path, options) -> list[Case]:
    """List one case per patient frame (ED and ES).

    Info.cfg is read leniently here (for the stratum and the frame files); a broken one is reported by
    :func:`convert_case`, so that ``--skip_bad`` can leave that patient out.

    Raises:
        DataPrepError: ``src`` holds no ``patientXXX`` folders (neither directly nor in training/ or testing/).
    """
    folders = _patient_folders(Path(src))
    if not folders:
        raise DataPrepError(
            src,
            "no patientXXX folders found (directly or under training/ and testing/)",
            "pass the ACDC root folder (the one holding training/ and testing/) as --src",
        )
    cases = []
    for folder, split in folders:
        info_path = _find(folder, "Info.cfg")
        try:
            info = parse_info(info_path)
        except DataPrepError:
            info = {}
        for phase in ("ED", "ES"):
            inputs = {"info": str(info_path)}
            if info:
                image, label = _frame_paths(folder, int(info[phase]))
                inputs["image"] = str(image)
                if label.exists() or split != "testing":
                    inputs["label"] = str(label)
            cases.append(
                Case(
                    case_id=f"{folder.name}_{phase}",
                    group_id=folder.name,
                    inputs=inputs,
                    split=split,
                    stratum=info.get("Group"),
                    extra={"phase": phase, "folder": str(folder), "split": split},
                )
            )
    return cases


def _volume(data: np.ndarray, path: Path) -> np.ndarray:
    """A 3D (X, Y, Z) volume; a 2D image counts as one slice, a 4D one with a single frame is squeezed."""
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise DataPrepError(path, f"expected a 3D short-axis volume, got shape {data.shape}",
                            "pass the ED/ES frame files, not the 4D cine")
    return data


def _image_dtype(data: np.ndarray) -> np.ndarray:
    """int16 when the values are integers that fit (ACDC stores int16 or uint8), float32 otherwise."""
    if data.dtype.kind in "iub" and data.size and data.min() >= -32768 and data.max() <= 32767:
        return data.astype(np.int16)
    return data.astype(np.float32)


def convert_case(case: Case, out: Path, options) -> list[dict]:
    """Cut one patient frame into 2D slices under ``out/images`` and ``out/labels``.

    Raises:
        DataPrepError: Info.cfg missing or broken, the frame file it names missing or corrupt, the ground
            truth missing (outside testing/), of another shape than its image, or with values outside 0..3.
    """
    folder = Path(case.extra["folder"])
    info_path = _find(folder, "Info.cfg")
    info = parse_info(info_path)
    phase = case.extra["phase"]
    image_path, label_path = _frame_paths(folder, int(info[phase]))
    if not image_path.is_file():
        raise DataPrepError(
            image_path,
            f"{phase} frame {info[phase]} named in {info_path.name} has no image file",
            f"check '{phase}:' in {info_path} or restore {image_path.name}",
        )
    image, zooms = read_nifti(image_path)
    image = _volume(image, image_path)
    label = None
    if label_path.is_file():
        label_data, _ = read_nifti(label_path)
        label = _volume(label_data, label_path)
        if label.shape != image.shape:
            raise DataPrepError(
                label_path,
                f"ground truth has shape {label.shape} but its image {image_path.name} has {image.shape}",
                "restore the matching _gt file or use --skip_bad",
            )
        if label.dtype.kind == "f" and not np.array_equal(label, np.round(label)):
            raise DataPrepError(label_path, "ground truth holds non-integer values", "use the original _gt file")
        check_label_values(label_path, label, {int(k) for k in LABELS})
        label = label.astype(np.uint8)
    elif case.extra["split"] != "testing":
        raise DataPrepError(
            label_path,
            "ground truth not found",
            "restore the _gt file (only testing/ may lack labels) or use --skip_bad",
        )
    spacing = [round(float(zooms[0]), 6), round(float(zooms[1]), 6)] if len(zooms) >= 2 else [1.0, 1.0]
    # the third pixdim is the distance between slice centres, which the cardiac volumes need (medseg evaluate,
    # medseg.clinical); a 2D file or a zero pixdim says nothing about it, so the key is left out then
    thickness = round(float(zooms[2]), 6) if len(zooms) >= 3 and float(zooms[2]) > 0 else None
    image = _image_dtype(image)
    items = []
    for z in range(image.shape[2]):
        item_id = f"{folder.name}_{phase}_s{z:02d}"
        item = {
            "image": f"images/{item_id}.nii.gz",
            "case_id": item_id,
            "group_id": folder.name,
            "phase": phase,
            "slice": z,
            "spacing": spacing,
            **({"slice_thickness": thickness} if thickness is not None else {}),
            "_size": tuple(int(s) for s in image.shape[:2]),
        }
        if "Group" in info:
            item["class"] = info["Group"]
        write_nifti_2d(image[:, :, z], spacing, out / item["image"])
        if label is not None:
            item["label"] = f"labels/{item_id}.nii.gz"
            write_nifti_2d(label[:, :, z], spacing, out / item["label"])
            values, counts = np.unique(label[:, :, z], return_counts=True)
            found = dict(zip(values.tolist(), counts.tolist(), strict=True))
            item["_label_counts"] = {int(k): int(found.get(int(k), 0)) for k in LABELS}
        items.append(item)
    return items
