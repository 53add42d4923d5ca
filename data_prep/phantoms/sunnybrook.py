"""A synthetic dataset in the Sunnybrook Cardiac Data layout (DICOM cine MRI + manual contours).

Written like the real sample::

    link.csv                                                patient_id,original_id (DICOM folder -> contour folder)
    dicoms/SCD0000101/<N>.dcm                               MR slices; N = slice * 20 + phase (20 phases per slice)
    contourfiles/SC-HF-I-1/i-contours/IM-0001-NNNN-icontour-manual.txt   endocardium, one "x y" per line
    contourfiles/SC-HF-I-1/o-contours/IM-0001-NNNN-ocontour-manual.txt   epicardium

As in the real data, every annotated image has an i-contour (left-ventricle blood pool) and only the
end-diastolic ones also have an o-contour; one image per slice position is written without contours.
Contour points are (x = column, y = row) pixel coordinates in steps of 0.5.

The DICOM files are written with pydicom (MR Image Storage, explicit VR little endian, 16-bit signed or
8-bit pixels) and carry fake but recognisable identifying values (PatientName, PatientID,
PatientBirthDate, InstitutionName, AccessionNumber, see :func:`identity`) so that de-identification can be tested.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from data_prep.phantoms import heart

SHAPE = (96, 96)
PHASES = 20
_NAMES = ("Doe^Jane", "Roe^Richard", "Smith^Anna", "Novak^Petr", "Garcia^Lucia", "Tanaka^Yui", "Okafor^Ada")


def identity(index: int, seed: int) -> dict[str, str]:
    """The fake identifying DICOM values of phantom patient ``index`` (0-based) for ``seed``."""
    return {
        "PatientName": f"{_NAMES[index % len(_NAMES)]}{index + 1}",
        "PatientID": f"MRN{seed % 1000:03d}{7301 + index:05d}",
        "PatientBirthDate": f"19{40 + (7 * index + seed) % 50:02d}{1 + index % 12:02d}{10 + index % 18:02d}",
        "InstitutionName": "Phantom General Hospital",
        "AccessionNumber": f"ACC{seed % 100:02d}{4410 + index:06d}",
    }


def folder_names(index: int) -> tuple[str, str]:
    """(DICOM folder, contour folder) of patient ``index``, e.g. ``SCD0000101`` and ``SC-HF-I-1``."""
    return f"SCD{index + 1:05d}01", f"SC-HF-I-{index + 1}"


def _uid(*parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["medseg-phantom-sunnybrook", *map(str, parts)])


def _write_dicom(pixels: np.ndarray, path: Path, fields: dict, series: dict) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage

    sop_uid = _uid(series["SeriesInstanceUID"], fields["InstanceNumber"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "CARDIAC"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20090101"
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.Modality = "MR"
    ds.Manufacturer = "medseg phantom"
    for key, value in {**series, **fields}.items():
        setattr(ds, key, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _write_contour(polygon: np.ndarray, path: Path) -> None:
    # traced contours in the real data move along half pixels
    points = np.round(polygon * 2) / 2
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x:.2f} {y:.2f}\n" for x, y in points))


def _n_points(ellipse: heart.Ellipse) -> int:
    return max(12, int(2 * math.pi * max(ellipse.a, ellipse.b)))


def generate(out: Path, n: int, seed: int) -> None:
    """Write ``n`` synthetic Sunnybrook patients under ``out``.

    Args:
        out: the dataset root to create (``dicoms/``, ``contourfiles/`` and ``link.csv`` go inside).
        n: number of patients.
        seed: the same seed gives byte-identical files.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    links = ["patient_id,original_id"]
    for index in range(n):
        rng = np.random.default_rng([seed, index])
        dicom_folder, contour_folder = folder_names(index)
        links.append(f"{dicom_folder},{contour_folder}")
        patient = heart.sample_patient(rng)
        n_slices = int(rng.integers(3, 5))
        ed_phase, es_phase = int(rng.integers(18, 21)), int(rng.integers(7, 11))
        pixel_spacing = round(float(rng.uniform(1.25, 1.6)), 6)
        thickness = float(rng.choice([8.0, 10.0]))
        dtype, max_value = (np.int16, 1200) if index % 2 == 0 else (np.uint8, 255)
        series = {
            **identity(index, seed),
            "StudyInstanceUID": _uid(seed, index, "study"),
            "SeriesInstanceUID": _uid(seed, index, "series"),
            "FrameOfReferenceUID": _uid(seed, index, "frame"),
            "SeriesNumber": 300,
            "PixelSpacing": [pixel_spacing, pixel_spacing],
            "SliceThickness": thickness,
            "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
        }
        for s in range(n_slices):
            slice_frac = 0.1 + 0.7 * s / max(1, n_slices - 1)
            for phase, contraction, contours in ((ed_phase, 0.0, "io"), (es_phase, 1.0, "i"), (14, 0.6, "")):
                number = s * PHASES + phase
                geom = heart.heart_geometry(patient, SHAPE, slice_frac, contraction, rng)
                pixels = heart.to_uint(heart.render_image(geom, patient, rng), max_value, dtype)
                z = round(-20.0 + s * thickness, 3)
                fields = {
                    "InstanceNumber": number,
                    "ImagePositionPatient": [-SHAPE[1] * pixel_spacing / 2, -SHAPE[0] * pixel_spacing / 2, z],
                    "SliceLocation": z,
                }
                _write_dicom(pixels, out / "dicoms" / dicom_folder / f"{number}.dcm", fields, series)
                stem = out / "contourfiles" / contour_folder
                if "i" in contours:
                    polygon = geom.endocardium.polygon(_n_points(geom.endocardium))
                    _write_contour(polygon, stem / "i-contours" / f"IM-0001-{number:04d}-icontour-manual.txt")
                if "o" in contours:
                    polygon = geom.epicardium.polygon(_n_points(geom.epicardium))
                    _write_contour(polygon, stem / "o-contours" / f"IM-0001-{number:04d}-ocontour-manual.txt")
    (out / "link.csv").write_text("\n".join(links) + "\n")
