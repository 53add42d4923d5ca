"""Find and read a colleague's images, and write masks in each input's own format and geometry.

* PNG / JPEG (and BMP, TIFF): one 2D image, read by the bundle's own ``LoadImaged``; the mask is a PNG of the
  original size (binary: 0/255 so it can be viewed; several classes: the label values 0..K).
* NIfTI (``.nii``, ``.nii.gz``): a 2D slice or a volume, segmented slice by slice along the last axis; the mask
  is a NIfTI with the input's affine and header.
* DICOM: the ``.dcm`` files of one folder and one ``SeriesInstanceUID`` form a series, stacked in
  ``InstanceNumber`` order; the mask is a NIfTI with the series' affine, and ``medseg predict`` also writes a
  DICOM Segmentation referencing the series (:mod:`medseg.sharing.dicom_seg`).
* a ``data_prep`` ``datalist.json``: the images of its items (every section, or one), each named by its case id.

The ED and ES frames of an ACDC-style patient folder and the items of a datalist that carry a patient and a phase
are tagged with them (:mod:`medseg.sharing.cardiac`), for the clinical indices.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.sharing.errors import SharingError

if TYPE_CHECKING:
    from medseg.sharing.cardiac import CardiacInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


@dataclass
class InputCase:
    """One thing to segment: an image, a NIfTI file, or a DICOM series.

    Attributes:
        kind: ``image``, ``nifti`` or ``dicom``.
        files: its files (one, or the series' files).
        name: the output name (relative path without suffix), unique among the inputs.
        cardiac: the patient and phase (ED/ES) this input is a frame of, when the layout says so; else None.
    """

    kind: str
    files: list[Path]
    name: str
    cardiac: CardiacInput | None = None

    @property
    def source(self) -> str:
        return str(self.files[0].parent if self.kind == "dicom" else self.files[0])


@dataclass
class Volume:
    """A loaded NIfTI or DICOM input: slices along the last axis, their geometry and spacing.

    Attributes:
        array: (X, Y, Z) float32 (Z=1 for a single slice).
        affine: 4x4 voxel -> RAS mm.
        spacing: mm per voxel along X, Y, Z, or None when unknown.
        header: the NIfTI header to copy into the mask (None for DICOM).
        squeeze: the input had no third axis (write a 2D mask).
        notes: remarks for ``findings.csv``.
        datasets: a DICOM series' datasets, in slice order (for the DICOM SEG).
    """

    array: Any
    affine: Any
    spacing: tuple[float, float, float] | None
    header: Any = None
    squeeze: bool = False
    notes: list[str] = field(default_factory=list)
    datasets: list = field(default_factory=list)


def discover(input_path: str | Path, section: str | None = None) -> list[InputCase]:
    """List what to segment under a file or folder (recursively), or in a datalist, in a stable order.

    Args:
        input_path: an image, NIfTI file, DICOM series folder, a folder of them, or a ``datalist.json``.
        section: the datalist section to segment (default: every section); only for a datalist.

    Raises:
        SharingError: the path does not exist, holds nothing to segment, or ``section`` is given for another input.
    """
    from medseg.sharing.cardiac import tag_acdc_frames

    input_path = Path(input_path)
    if not input_path.exists():
        raise SharingError(
            input_path, "not found", "pass an image, a NIfTI file, a DICOM folder, a folder of them or a datalist.json"
        )
    if input_path.is_file() and input_path.suffix.lower() == ".json":
        return discover_datalist(input_path, section)
    if section is not None:
        raise SharingError("--section", f"applies to a datalist.json input, not to {input_path}", "drop --section")
    files = [input_path] if input_path.is_file() else sorted(p for p in input_path.rglob("*") if p.is_file())
    base = input_path.parent if input_path.is_file() else input_path
    cases: list[InputCase] = []
    series: dict[Path, list[Path]] = defaultdict(list)
    for path in files:
        if any(part.startswith(".") for part in path.relative_to(base).parts):
            continue
        suffix = _suffix(path)
        rel = path.relative_to(base)
        if suffix in IMAGE_SUFFIXES:
            cases.append(InputCase("image", [path], (rel.parent / _stem(path)).as_posix()))
        elif suffix in NIFTI_SUFFIXES:
            cases.append(InputCase("nifti", [path], (rel.parent / _stem(path)).as_posix()))
        elif suffix in DICOM_SUFFIXES:
            series[path.parent].append(path)
    for folder, members in sorted(series.items()):
        rel = folder.relative_to(base) if folder != base else Path(folder.name)
        cases.append(InputCase("dicom", members, rel.as_posix()))
    if not cases:
        raise SharingError(
            input_path,
            "holds no image to segment",
            f"pass {', '.join(IMAGE_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES)} files or a folder of them",
        )
    names = [c.name for c in cases]
    for case in cases:
        if names.count(case.name) > 1:  # e.g. a.png and a.jpg: keep both, named apart
            case.name = f"{case.name}_{_suffix(case.files[0]).lstrip('.').replace('.', '_')}"
    return tag_acdc_frames(cases, drop_extras=input_path.is_dir())


def discover_datalist(path: Path, section: str | None = None) -> list[InputCase]:
    """The images of a ``data_prep`` datalist's items, named by case id and tagged with their patient and phase.

    Args:
        path: the ``datalist.json``; item paths are relative to its folder.
        section: ``training``, ``validation`` or ``testing``; None: every section, in that order.

    Raises:
        SharingError: not a datalist, the section is missing or empty, or no item has an image.
    """
    from medseg.data import DatalistError, read_datalist
    from medseg.data.datalist import SECTIONS
    from medseg.sharing.cardiac import cardiac_of_item

    try:
        data = read_datalist(path)
    except DatalistError as exc:
        raise SharingError(path, str(exc).removeprefix(f"{path}: ")) from exc
    if section is not None and not (isinstance(data.get(section), list) and data[section]):
        present = [s for s in SECTIONS if isinstance(data.get(s), list) and data[s]]
        raise SharingError(path, f"has no items in section {section!r}", f"choose --section among {present}")
    cases: list[InputCase] = []
    seen: set[Path] = set()
    names: set[str] = set()
    for name in [section] if section else SECTIONS:
        for item in data.get(name) or []:
            image = item.get("image") if isinstance(item, dict) else None
            if not isinstance(image, str):
                continue
            file = (path.parent / image).resolve()
            if file in seen:  # an item listed in two sections is segmented once
                continue
            seen.add(file)
            suffix = _suffix(file)
            kind = "image" if suffix in IMAGE_SUFFIXES else "nifti" if suffix in NIFTI_SUFFIXES else None
            if kind is None:
                continue
            stem = str(item.get("case_id") or _stem(file))
            unique, k = stem, 2
            while unique in names:  # two items of one case id must not write one mask file
                unique, k = f"{stem}_{k}", k + 1
            names.add(unique)
            cases.append(InputCase(kind, [file], unique, cardiac_of_item(item)))
    if not cases:
        raise SharingError(path, "lists no PNG/JPG/NIfTI image to segment", "check the datalist's 'image' entries")
    return cases


def read_nifti(path: Path) -> Volume:
    """Read a NIfTI file as (X, Y, Z) with its affine, header and spacing."""
    import nibabel as nib
    import numpy as np

    try:
        img = nib.load(str(path))
        array = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises several types for a bad file
        raise SharingError(path, f"cannot be read as NIfTI ({type(exc).__name__}: {exc})", "check the file") from exc
    squeeze = array.ndim == 2
    if squeeze:
        array = array[..., None]
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise SharingError(
            path,
            f"has shape {array.shape}; expected a 2D slice or a 3D volume",
            "split a 4D (cine) file into one volume per frame",
        )
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    spacing = (zooms + (1.0,) * 3)[:3] if all(z > 0 for z in zooms) else None
    return Volume(array, img.affine, spacing, header=img.header, squeeze=squeeze)


def read_dicom_series(files: list[Path]) -> Volume:
    """Read a DICOM series (one folder) as (X=column, Y=row, Z=instance) with an affine in RAS.

    Raises:
        SharingError: a file is unreadable, the series holds several series or sizes.
    """
    import numpy as np
    import pydicom

    slices = []
    for path in files:
        try:
            ds = pydicom.dcmread(str(path))
            pixels = ds.pixel_array.astype(np.float32)
        except Exception as exc:  # pydicom raises many types for bad files
            raise SharingError(
                path, f"cannot be read as DICOM ({type(exc).__name__}: {exc})", "check the file"
            ) from exc
        if pixels.ndim != 2:
            raise SharingError(path, f"holds a {pixels.ndim}D pixel array; expected one 2D slice per file")
        slope, intercept = float(getattr(ds, "RescaleSlope", 1) or 1), float(getattr(ds, "RescaleIntercept", 0) or 0)
        slices.append((int(getattr(ds, "InstanceNumber", 0) or 0), path.name, ds, pixels * slope + intercept))
    slices.sort(key=lambda s: (s[0], s[1]))
    uids = {str(getattr(s[2], "SeriesInstanceUID", "")) for s in slices}
    shapes = {s[3].shape for s in slices}
    if len(uids) > 1 or len(shapes) > 1:
        raise SharingError(
            files[0].parent,
            f"mixes {len(uids)} series / {len(shapes)} image sizes",
            "put each DICOM series in its own folder",
        )
    first = slices[0][2]
    array = np.stack([s[3].T for s in slices], axis=-1)  # pixel_array is (row, column): X is the column
    row_mm, col_mm = (float(v) for v in getattr(first, "PixelSpacing", [0, 0]))
    notes = []
    affine = np.eye(4)
    spacing = None
    if row_mm > 0 and col_mm > 0:
        orientation = np.array([float(v) for v in getattr(first, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])])
        along_x, along_y = orientation[:3], orientation[3:]
        normal = np.cross(along_x, along_y)
        positions = [np.array([float(v) for v in getattr(s[2], "ImagePositionPatient", [0, 0, 0])]) for s in slices]
        gaps = [float(np.dot(b - a, normal)) for a, b in zip(positions, positions[1:], strict=False)]
        thickness = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(first, "SliceThickness", 0) or 0)
        if gaps and all(abs(g - gaps[0]) < 1e-3 and abs(g) > 1e-3 for g in gaps):
            step = gaps[0]
        else:
            step = thickness or 1.0
            if len(slices) > 1:
                notes.append("slices are not evenly spaced (e.g. several cine phases): no volume computed")
        lps = np.eye(4)
        lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = along_x * col_mm, along_y * row_mm, normal * step, positions[0]
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM is LPS, NIfTI RAS
        spacing = (col_mm, row_mm, abs(step)) if not notes else (col_mm, row_mm, 0.0)
    return Volume(array, affine, spacing, notes=notes, datasets=[s[2] for s in slices])


def slice_item(volume: Volume, index: int, source: str) -> dict:
    """``{"image": MetaTensor}`` of slice ``index``, shaped as the bundle's ``LoadImaged`` gives a 2D NIfTI."""
    import numpy as np
    import torch
    from monai.data import MetaTensor

    affine2d = np.eye(3)
    affine2d[:2, :2], affine2d[:2, 2] = volume.affine[:2, :2], volume.affine[:2, 3]
    image = MetaTensor(
        torch.as_tensor(np.ascontiguousarray(volume.array[..., index])),
        affine=torch.as_tensor(affine2d, dtype=torch.float64),
        meta={"original_channel_dim": "no_channel", "filename_or_obj": source, "spatial_shape": volume.array.shape[:2]},
    )
    return {"image": image}


def write_png_mask(label_map: Any, path: Path, binary: bool) -> None:
    """Write a 2D label map given as MONAI reads PNGs (X=column first) as a PNG of the original size."""
    import numpy as np
    from PIL import Image

    values = label_map.T.astype(np.uint8)  # MONAI's PILReader gives (width, height): back to rows first
    if binary:
        values = (values > 0).astype(np.uint8) * 255
    Image.fromarray(values, mode="L").save(path, compress_level=1)  # 3x faster to write than level 6; masks stay KBs


def write_nifti_mask(label_map: Any, volume: Volume, path: Path) -> None:
    """Write an (X, Y, Z) label map as NIfTI with the input's affine (and header, for a NIfTI input)."""
    import nibabel as nib
    import numpy as np

    data = label_map[..., 0] if volume.squeeze else label_map
    header = volume.header.copy() if volume.header is not None else None
    img = nib.Nifti1Image(data.astype(np.uint8), volume.affine, header=header)
    img.set_data_dtype(np.uint8)
    img.header["scl_slope"], img.header["scl_inter"] = 1, 0
    nib.save(img, str(path))
