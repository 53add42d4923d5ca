"""Reading and writing the files that converters handle, with errors that name the file."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from data_prep.errors import DataPrepError


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks so that memory stays flat."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image with PIL.

    Args:
        path: a PNG, JPEG or other file that PIL reads.

    Returns:
        the decoded image.

    Raises:
        DataPrepError: the file is missing, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataPrepError(path, "file not found", "check the path or the dataset layout")
    try:
        img = Image.open(path)
        img.load()  # decode now: a truncated file fails here, not later in a worker
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataPrepError(
            path, f"cannot be read as an image ({exc})", "re-download or remove the file, or use --skip-bad"
        ) from exc
    return img


def read_rgb(path: str | Path) -> Image.Image:
    """Open an image and convert it to 8-bit RGB (grey and palette images are expanded)."""
    return open_image(path).convert("RGB")


def read_grey(path: str | Path) -> np.ndarray:
    """Open an image as a 2D array; RGB images whose channels are all equal are accepted as grey."""
    img = open_image(path)
    if img.mode in ("RGB", "RGBA"):
        arr = np.asarray(img.convert("RGB"))
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise DataPrepError(path, "expected a single-channel image, got colour", "save it as greyscale")
        return arr[..., 0].copy()
    if img.mode not in ("L", "P", "I", "I;16", "1"):
        img = img.convert("L")
    return np.asarray(img)


def check_label_values(path: str | Path, mask: np.ndarray, allowed: set[int]) -> None:
    """Raise a DataPrepError naming ``path`` when ``mask`` holds values outside ``allowed``."""
    found = {int(v) for v in np.unique(mask)}
    extra = sorted(found - set(allowed))
    if extra:
        raise DataPrepError(
            path,
            f"mask has unexpected values {extra[:10]} (allowed: {sorted(allowed)})",
            "check that this is the right mask file, or use --skip-bad",
        )


def check_same_size(image_path: str | Path, image_size: tuple, mask_path: str | Path, mask_size: tuple) -> None:
    """Raise a DataPrepError when an image and its mask differ in size (sizes as (height, width))."""
    if tuple(image_size) != tuple(mask_size):
        raise DataPrepError(
            mask_path,
            f"mask is {mask_size[0]}x{mask_size[1]} but its image {Path(image_path).name} is "
            f"{image_size[0]}x{image_size[1]} (height x width)",
            "masks must have the size of their image; re-export the mask or use --skip-bad",
        )


def write_png(array: np.ndarray, path: str | Path) -> None:
    """Write a uint8 grey (H, W) or RGB (H, W, 3) array as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array.astype(np.uint8))).save(path, format="PNG", optimize=False)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link ``src`` to ``dst`` (no extra disk), or copy it when linking is not possible."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def resize_to_max(img: Image.Image, max_size: int | None, resample=Image.Resampling.LANCZOS) -> Image.Image:
    """Shrink ``img`` so that its long side is at most ``max_size`` pixels (never enlarges)."""
    if not max_size or max(img.size) <= max_size:
        return img
    scale = max_size / max(img.size)
    new = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
    return img.resize(new, resample=resample)


def read_nifti(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a NIfTI file fully with nibabel.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.

    Returns:
        the voxel array (scaled by the header's slope and intercept when set) and the voxel sizes (pixdim).

    Raises:
        DataPrepError: the file is missing, truncated or not NIfTI.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataPrepError(path, "file not found", "check the path or the dataset layout")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)  # reads (and decompresses) everything now: a truncated file fails here
        zooms = tuple(float(z) for z in img.header.get_zooms())
    except Exception as exc:  # nibabel raises gzip, EOF, zlib and ImageFileError alike for a damaged file
        raise DataPrepError(
            path,
            f"cannot be read as NIfTI ({type(exc).__name__}: {exc})",
            "re-download or remove the file, or use --skip-bad",
        ) from exc
    return data, zooms


def write_nifti_2d(array: np.ndarray, spacing: tuple[float, float], path: str | Path) -> None:
    """Write a 2D array as NIfTI with ``spacing`` (mm along axis 0, axis 1) in the affine and pixdim.

    Only the voxel data and the spacing are written: nothing else of a source header is carried over.
    nibabel writes ``.nii.gz`` with gzip mtime 0 and no file name, so equal input gives equal bytes.
    """
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.ascontiguousarray(array), np.diag([float(spacing[0]), float(spacing[1]), 1.0, 1.0]))
    img.header.set_data_dtype(array.dtype)
    img.header.set_xyzt_units("mm")
    img.to_filename(str(path))
