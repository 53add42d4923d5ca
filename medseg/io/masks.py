"""Read integer label masks (PNG or 2D NIfTI) and match them to cases by file name.

A mask is returned as an ``(H, W)`` integer array, axis 0 being rows, together with its pixel spacing in
millimetres (row, column) when the file records one (NIfTI headers do, PNG files do not). NIfTI arrays are
taken as stored, as MONAI's ``NibabelReader`` does, so a prediction and its ground truth written by the same
pipeline line up.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

MASK_EXTENSIONS = (".nii.gz", ".nii", ".png")
# suffixes that name a file as a mask rather than an image; stripped to get the case id
GT_SUFFIXES = ("_segmentation", "_mask", "_gt")
PRED_SUFFIXES = ("_pred", "_seg", "_segmentation", "_mask")
# ground truth stored as 0/255 (ISIC) is binarised at this value for a binary dataset
BINARY_THRESHOLD = 127


class MaskError(ValueError):
    """A mask file or folder that cannot be scored; the message names the file or case and the fix."""


def _split_extension(name: str) -> tuple[str, str] | None:
    lower = name.lower()
    for ext in MASK_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)], ext
    return None


def case_id_from_name(name: str, suffixes: Iterable[str] = GT_SUFFIXES) -> str | None:
    """Return the case id of a mask file name, or None when it is not a mask file.

    Args:
        name: file name such as ``ISIC_0001769_segmentation.png`` or ``patient001_frame01_pred.nii.gz``.
        suffixes: suffixes to strip from the stem (one, the first that matches).

    Returns:
        the case id (``ISIC_0001769``), or None for a file with another extension.
    """
    split = _split_extension(name)
    if split is None:
        return None
    stem = split[0]
    for suffix in suffixes:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def find_masks(folder: str | Path, suffixes: Iterable[str] = GT_SUFFIXES, what: str = "mask") -> dict[str, Path]:
    """Map case id -> mask file for every PNG/NIfTI file directly in ``folder``.

    Args:
        folder: the folder to list (not recursive).
        suffixes: suffixes stripped from file stems to get case ids.
        what: what the files are ("prediction", "ground truth"), for error messages.

    Returns:
        case id -> path, sorted by case id.

    Raises:
        MaskError: the folder is missing or holds no mask file, or two files give the same case id.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MaskError(f"{folder}: {what} folder not found; check the path")
    suffixes = tuple(suffixes)
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        case_id = case_id_from_name(path.name, suffixes)
        if case_id is None:
            continue
        if case_id in found:
            raise MaskError(
                f"{folder}: two {what} files for case {case_id!r}: {found[case_id].name} and {path.name}; "
                "keep one of them"
            )
        found[case_id] = path
    if not found:
        raise MaskError(
            f"{folder}: no {what} files (expected {', '.join(MASK_EXTENSIONS)} named <case id>[suffix]); "
            "check the folder"
        )
    return dict(sorted(found.items()))


def read_mask(path: str | Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Read a label mask as an ``(H, W)`` integer array.

    Args:
        path: a PNG (grey or palette; an RGB file with equal channels is accepted) or a 2D NIfTI file
            (a trailing singleton axis is dropped).

    Returns:
        ``(mask, spacing)``: the integer mask and (row mm, column mm) from a NIfTI header, else None.

    Raises:
        MaskError: the file is missing, unreadable, not 2D, or holds non-integer values.
    """
    path = Path(path)
    if not path.is_file():
        raise MaskError(f"{path}: mask file not found")
    spacing = None
    try:
        if path.name.lower().endswith((".nii", ".nii.gz")):
            import nibabel as nib

            image = nib.load(str(path))
            array = np.asarray(image.dataobj)
            zooms = image.header.get_zooms()
            if len(zooms) >= 2 and all(z > 0 for z in zooms[:2]):
                spacing = (float(zooms[0]), float(zooms[1]))
        else:
            from PIL import Image

            with Image.open(path) as img:
                img.load()
                array = np.asarray(img)
    except MaskError:
        raise
    except Exception as exc:  # PIL and nibabel raise many types for a broken file
        raise MaskError(f"{path}: cannot be read as a mask ({exc}); re-export it as PNG or NIfTI") from exc
    if array.ndim == 3 and array.shape[-1] in (3, 4) and not path.name.lower().endswith((".nii", ".nii.gz")):
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise MaskError(f"{path}: colour image, expected a single-channel label mask; save it as greyscale")
        array = array[..., 0]
    while array.ndim > 2 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise MaskError(f"{path}: mask has shape {array.shape}, expected a 2D (H, W) label map")
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != bool:
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise MaskError(f"{path}: mask holds non-integer values; save argmax'd labels, not probabilities")
    return array.astype(np.int64), spacing


def check_label_values(mask: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """Return ``mask`` with values in ``0..num_classes-1``, binarising 0/255 masks for binary datasets.

    A binary dataset (two classes) accepts masks holding 0/1 or 0/255 (ISIC ground truth); the latter is
    binarised at ``> 127`` (the same result as the ISIC scorer's ``> 128`` for 0/255 masks).

    Args:
        mask: integer label map.
        num_classes: number of label values of the dataset (background included).
        where: what to name in the error ("case ISIC_0001: prediction a.png").

    Returns:
        the mask, binarised where needed.

    Raises:
        MaskError: the mask holds values the dataset does not have.
    """
    values = np.unique(mask)
    if num_classes == 2 and values.size and set(values.tolist()) <= {0, 255}:
        return (mask > BINARY_THRESHOLD).astype(np.int64)
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        allowed = "0/1 or 0/255" if num_classes == 2 else f"0..{num_classes - 1}"
        raise MaskError(
            f"{where}: label values {bad[:10].tolist()} that the dataset does not have (allowed: {allowed}); "
            "check that the mask belongs to this dataset or pass the right --labels"
        )
    return mask
