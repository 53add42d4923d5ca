"""Sunnybrook Cardiac Data (cine MRI DICOM + manual contours) -> de-identified 2D NIfTI slices and masks.

Expected layout (as distributed, e.g. the Kaggle/Booz Allen copy)::

    SRC/link.csv                                          patient_id,original_id: DICOM folder -> contour folder
    SRC/dicoms/SCD0000101/<N>.dcm                         one MR image per file
    SRC/contourfiles/SC-HF-I-1/i-contours/IM-0001-NNNN-icontour-manual.txt   endocardium ("x y" per line)
    SRC/contourfiles/SC-HF-I-1/o-contours/IM-0001-NNNN-ocontour-manual.txt   epicardium

Contour ``IM-0001-NNNN`` belongs to ``dicoms/<patient_id>/<int(NNNN)>.dcm``. Only images with a contour
become items; link.csv rows whose contour folder is absent are skipped (the public sample lists five
patients and ships three).

Masks use the ACDC label values: 3 (left ventricle) inside the i-contour, 2 (myocardium) inside the
o-contour but not the i-contour. Images without an o-contour carry ``"annotated": [3]`` (``[2, 3]`` with
both contours): their myocardium is unlabelled, not absent. The right ventricle (1) is never annotated.

Polygons are filled with PIL ``ImageDraw.polygon``. Contour points are ``(x, y)`` = (column, row) pixel
coordinates where integer values are pixel centres; a pixel is filled when its centre is inside the
polygon or the outline passes through it (PIL rounds fractional vertices).

De-identification: the NIfTI files hold only the pixel values and the spacing (PixelSpacing); no DICOM
header field is copied. Case and group ids are pseudonyms (``sb`` + 8 hex digits of a salted sha256 of
the DICOM folder name), never PatientName or PatientID. provenance.json and bad_cases.json keep source
paths relative to --src, with every path component that equals or contains an identifying value of the
DICOM files (PatientName, PatientID, AccessionNumber, ..., see :mod:`data_prep.deid`) replaced by the
case's pseudonym; error lines get the same treatment.

Modality: every DICOM must say ``Modality`` MR; another modality (a CT series in the wrong folder) is
refused before any work with one line naming the file, unless ``--allow_modality`` is given.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from data_prep.datalist import Case
from data_prep.deid import Scrubber, dicom_identifiers
from data_prep.errors import DataPrepError
from data_prep.imageio import index_files, list_files, write_nifti_2d

NAME = "sunnybrook"
DESCRIPTION = "Sunnybrook Cardiac Data cine MRI with manual LV contours, as de-identified 2D slices (myocardium, LV)."
MODALITY = {"0": "MRI"}
LABELS = {"0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle"}
SOURCE = "Sunnybrook Cardiac Data, Radau et al., MIDAS Journal 2009"

LV, MYO = 3, 2
PSEUDONYM_SALT = "medseg-sunnybrook-v1"
EXPECTED_MODALITY = "MR"
_CONTOUR = re.compile(r"^IM-(\d{4})-(\d{4})-([io])contour-manual\.txt$", re.IGNORECASE)


def add_arguments(parser) -> None:
    """``--allow_modality``: convert DICOM files whose Modality is not MR."""
    parser.add_argument("--allow_modality", action="store_true",
                        help=f"convert DICOM files whose Modality is not {EXPECTED_MODALITY} (refused by default)")


def identifying_values(src: Path, cases: list, options) -> set[str]:
    """Identifying values of the DICOM files under the cases' DICOM folders; checks their Modality on the way.

    Every ``.dcm`` file of each DICOM folder is read (header only), not only the contoured ones: a folder
    name is compared with the identity of everything in it.

    Raises:
        DataPrepError: a DICOM whose Modality is not MR, without ``--allow_modality``.
    """
    values: set[str] = set()
    folders = sorted({str(Path(c.inputs["image"]).parent) for c in cases if "image" in c.inputs})
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for path in list_files(folder, (".dcm",)):
            found, modality = dicom_identifiers(path)
            values |= found
            if modality and modality != EXPECTED_MODALITY and not getattr(options, "allow_modality", False):
                shown = Scrubber(found).path(str(path), "<patient>")
                raise DataPrepError(shown, f"Modality is {modality}, but the sunnybrook converter expects "
                                    f"{EXPECTED_MODALITY} (cine MRI)", "check --src, or pass --allow_modality")
    return values


def pseudonym(dicom_folder: str) -> str:
    """The pseudonymous patient id of a DICOM folder: ``sb`` + 8 hex digits of a salted sha256."""
    return "sb" + hashlib.sha256(f"{PSEUDONYM_SALT}:{dicom_folder}".encode()).hexdigest()[:8]


def read_link(path: Path) -> list[tuple[str, str]]:
    """Read ``link.csv``: (DICOM folder, contour folder) pairs.

    Raises:
        DataPrepError: the file is missing, lacks the ``patient_id,original_id`` header, or has a row
            with another number of fields, an empty field or a folder name with a path separator.
    """
    if not path.is_file():
        raise DataPrepError(
            path, "link.csv not found", "the Sunnybrook root needs link.csv (patient_id,original_id per patient)"
        )
    with open(path, newline="", errors="replace") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]] if rows else []
    if header[:2] != ["patient_id", "original_id"]:
        raise DataPrepError(path, f"header is {header!r}, expected 'patient_id,original_id'", "fix link.csv")
    pairs = []
    for number, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if len(cells) != 2 or not all(cells) or any(("/" in c or "\\" in c or c in (".", "..")) for c in cells):
            raise DataPrepError(path, f"line {number} is not 'DICOM folder,contour folder': {row!r}", "fix link.csv")
        pairs.append((cells[0], cells[1]))
    if not pairs:
        raise DataPrepError(path, "lists no patient", "add one 'DICOM folder,contour folder' line per patient")
    return pairs


def find_cases(src: Path, options) -> list[Case]:
    """List one case per contoured image (an i- and/or o-contour file).

    Raises:
        DataPrepError: link.csv missing or malformed, or no contour folder of link.csv exists.
    """
    src = Path(src)
    pairs = read_link(src / "link.csv")
    cases = []
    listed = set()
    for dicom_folder, contour_folder in pairs:
        listed.add(contour_folder)
        contour_dir = src / "contourfiles" / contour_folder
        if not contour_dir.is_dir():
            continue
        contours: dict[int, dict[str, str]] = {}
        for kind in ("i", "o"):
            folder = contour_dir / f"{kind}-contours"
            for path in list_files(folder, (".txt",)) if folder.is_dir() else []:
                match = _CONTOUR.match(path.name)
                if match and match.group(3).lower() == kind:
                    contours.setdefault(int(match.group(2)), {})[f"{kind}_contour"] = str(path)
        group = pseudonym(dicom_folder)
        dicom_dir = src / "dicoms" / dicom_folder
        dicoms = index_files(dicom_dir, (".dcm",)) if dicom_dir.is_dir() else {}
        for number in sorted(contours):
            image = dicoms.get(f"{number}.dcm", dicom_dir / f"{number}.dcm")  # reported missing by convert_case
            inputs = {"image": str(image), **contours[number]}
            cases.append(Case(case_id=f"{group}_im{number:04d}", group_id=group, inputs=inputs))
    contour_root = src / "contourfiles"
    unlisted = sorted(p.name for p in (contour_root.iterdir() if contour_root.is_dir() else [])
                      if p.is_dir() and not p.name.startswith(".") and p.name not in listed)
    if unlisted:
        print(f"warning: {src / 'link.csv'} does not list contour folders {unlisted}; they are left out",
              file=sys.stderr)
    if not cases:
        raise DataPrepError(
            src / "contourfiles",
            "no contour files found for the patients in link.csv",
            "expected contourfiles/<original_id>/{i,o}-contours/IM-0001-NNNN-{i,o}contour-manual.txt",
        )
    return cases


def read_dicom_pixels(path: Path) -> tuple[np.ndarray, list[float]]:
    """Read a DICOM image's pixels (modality LUT applied) and its PixelSpacing; nothing else of the header.

    Returns:
        the (rows, columns) array and the spacing [row mm, column mm].

    Raises:
        DataPrepError: the file is missing, not DICOM, has no decodable 2D pixel data or no PixelSpacing.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        with warnings.catch_warnings():  # invalid-VR warnings of real exports would flood the one-line log
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            pixels = apply_modality_lut(ds.pixel_array, ds)
            spacing = ds.get("PixelSpacing")
    except Exception as exc:  # pydicom raises InvalidDicomError, AttributeError, ValueError... for bad files
        raise DataPrepError(
            path, f"cannot be read as a DICOM image ({type(exc).__name__}: {exc})", "restore the file or use --skip_bad"
        ) from exc
    if pixels.ndim != 2:
        raise DataPrepError(path, f"expected one 2D image, got pixel data of shape {pixels.shape}", "")
    if not spacing or len(spacing) != 2 or not all(float(s) > 0 for s in spacing):
        raise DataPrepError(path, f"PixelSpacing is missing or invalid ({spacing!r})", "restore the original DICOM")
    if pixels.dtype.kind in "iub" and pixels.min() >= -32768 and pixels.max() <= 32767:
        pixels = pixels.astype(np.int16)
    else:
        pixels = pixels.astype(np.float32)
    return pixels, [float(spacing[0]), float(spacing[1])]


def read_contour(path: Path, shape: tuple[int, int]) -> list[tuple[float, float]]:
    """Read a contour file: whitespace-separated ``x y`` pairs in pixel coordinates of an image of ``shape``.

    Raises:
        DataPrepError: an odd number of values, a value that is not a finite number, fewer than 3 points, or
            a point outside the image (beyond the outer pixel edges).
    """
    tokens = Path(path).read_text(errors="replace").split()
    if len(tokens) % 2:
        raise DataPrepError(path, f"has {len(tokens)} numbers, not 'x y' pairs", "restore the contour file")
    try:
        values = [float(t) for t in tokens]
    except ValueError as exc:
        raise DataPrepError(path, f"holds a value that is not a number ({exc})", "restore the contour file") from exc
    if not all(math.isfinite(v) for v in values):
        raise DataPrepError(path, "holds a non-finite value (nan or inf)", "restore the contour file")
    points = list(zip(values[0::2], values[1::2], strict=True))
    if len(points) < 3:
        raise DataPrepError(path, f"has {len(points)} points; a contour needs at least 3", "restore the contour file")
    rows, cols = shape
    outside = [(x, y) for x, y in points if not (-0.5 <= x <= cols - 0.5 and -0.5 <= y <= rows - 0.5)]
    if outside:
        raise DataPrepError(
            path,
            f"point {outside[0]} lies outside the {cols}x{rows} image (x = column, y = row)",
            "check that the contour belongs to this DICOM (link.csv) or use --skip_bad",
        )
    return points


def fill_polygon(points: list[tuple[float, float]], shape: tuple[int, int]) -> np.ndarray:
    """Boolean (rows, cols) mask of the polygon ``points`` ((x, y), integer values at pixel centres)."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(canvas).polygon(points, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def convert_case(case: Case, out: Path, options) -> list[dict]:
    """Write the image as 2D NIfTI and its rasterised contours as a label NIfTI.

    Raises:
        DataPrepError: the DICOM named by the contour is missing or unreadable, a contour file is
            malformed, or there is an o-contour without an i-contour.
    """
    image_path = Path(case.inputs["image"])
    first_contour = case.inputs.get("i_contour") or case.inputs.get("o_contour")
    if not image_path.is_file():
        raise DataPrepError(
            first_contour,
            f"points to DICOM {image_path.parent.name}/{image_path.name}, which does not exist",
            "check link.csv and the dicoms/ folder, or use --skip_bad",
        )
    if "i_contour" not in case.inputs:
        raise DataPrepError(
            case.inputs["o_contour"],
            "o-contour without an i-contour: the myocardium cannot be separated from the blood pool",
            "add the i-contour or use --skip_bad",
        )
    pixels, spacing = read_dicom_pixels(image_path)
    mask = np.zeros(pixels.shape, dtype=np.uint8)
    annotated = [LV]
    if "o_contour" in case.inputs:
        mask[fill_polygon(read_contour(Path(case.inputs["o_contour"]), pixels.shape), pixels.shape)] = MYO
        annotated = [MYO, LV]
    mask[fill_polygon(read_contour(Path(case.inputs["i_contour"]), pixels.shape), pixels.shape)] = LV
    item = {
        "image": f"images/{case.case_id}.nii.gz",
        "label": f"labels/{case.case_id}.nii.gz",
        "spacing": spacing,
        "annotated": annotated,
        "_size": tuple(int(s) for s in pixels.shape),
    }
    write_nifti_2d(pixels, spacing, out / item["image"])
    write_nifti_2d(mask, spacing, out / item["label"])
    values, counts = np.unique(mask, return_counts=True)
    # count only what was annotated: an unlabelled myocardium is not zero myocardium
    found = dict(zip(values.tolist(), counts.tolist(), strict=True))
    item["_label_counts"] = {value: int(found.get(value, 0)) for value in (0, *annotated)}
    return [item]
