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
            path, f"cannot be read as an image ({exc})", "re-download or remove the file, or use --skip_bad"
        ) from exc
    return img


# files that operating systems and archivers leave beside data: never cases
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})


def is_hidden(name: str) -> bool:
    """Whether a file name is hidden or system clutter (``.DS_Store``, macOS resource forks ``._x.png``, ...)."""
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def list_files(folder: str | Path, suffixes: tuple[str, ...] = ()) -> list[Path]:
    """The data files of a folder, sorted by name.

    Hidden and system files (see :func:`is_hidden`) and sub-folders are skipped; ``suffixes`` (e.g. ``(".png",)``,
    ``(".nii.gz",)``) are matched case-insensitively, so ``cmr5.PNG`` counts as a PNG.

    Raises:
        DataPrepError: the folder cannot be listed, or an entry is a symlink loop.
    """
    folder = Path(folder)
    wanted = tuple(s.lower() for s in suffixes)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DataPrepError(folder, f"cannot be listed ({exc.strerror})", "check the folder's permissions") from exc
    found = []
    for entry in entries:
        if is_hidden(entry.name) or (wanted and not entry.name.lower().endswith(wanted)):
            continue
        try:
            if not entry.is_file():
                continue
        except OSError as exc:  # a symlink loop (ELOOP) or an entry removed while listing
            raise DataPrepError(entry.path, f"cannot be opened ({exc.strerror})", "remove the broken symlink") from exc
        found.append(Path(entry.path))
    return found


def index_files(folder: str | Path, suffixes: tuple[str, ...] = ()) -> dict[str, Path]:
    """Lower-case file name -> path for :func:`list_files`, for case-insensitive look-ups of expected names."""
    return {p.name.lower(): p for p in list_files(folder, suffixes)}


def check_finite(path: str | Path, array: np.ndarray) -> None:
    """Raise a DataPrepError naming ``path`` when a float array holds NaN or infinite values."""
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise DataPrepError(path, f"holds {bad} non-finite values (NaN or infinity)",
                            "repair or re-export the file, or use --skip_bad")


def intensity_to_uint8(array: np.ndarray, path: str | Path) -> np.ndarray:
    """Bring a grey or colour intensity array to 8 bits without clipping (the policy of every converter).

    * 8-bit data is kept as it is;
    * data of a wider type whose values already lie in 0..255 (8-bit data in a 16-bit container) is kept as it is;
    * anything else (16-bit, 32-bit, float) is scaled linearly from its own minimum..maximum to 0..255 and rounded.
      The range used is the image's actual one, not its type's: a 12-bit scan stored in 16 bits keeps its contrast.

    Raises:
        DataPrepError: the array holds NaN or infinite values.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    check_finite(path, array)
    if array.size == 0:
        return array.astype(np.uint8)
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 255 and np.array_equal(array, np.round(array)):
        return array.astype(np.uint8)
    if high == low:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (array.astype(np.float64) - low) * (255.0 / (high - low))
    return np.round(scaled).astype(np.uint8)


def to_8bit(img: Image.Image, path: str | Path) -> Image.Image:
    """An 8-bit ``L`` or ``RGB`` image with the same content as ``img`` (see :func:`intensity_to_uint8`).

    Palette images go through their palette (a grey palette gives ``L``), alpha is dropped, 1-bit images become
    0/255 and 16-bit, 32-bit and float images are scaled by their actual range, never clipped.
    """
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("P", "PA"):
        rgb = np.asarray(img.convert("RGB"))
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return Image.fromarray(np.ascontiguousarray(rgb[..., 0]), mode="L")
        return Image.fromarray(rgb, mode="RGB")
    if img.mode == "1":
        return img.convert("L")
    if img.mode == "LA":
        return img.getchannel("L")
    if img.mode.startswith("I") or img.mode == "F":
        return Image.fromarray(intensity_to_uint8(np.asarray(img), path), mode="L")
    return img.convert("RGB")  # RGBA, CMYK, YCbCr, LAB, HSV


def read_rgb(path: str | Path) -> Image.Image:
    """Open an image as 8-bit RGB (grey, palette and 16-bit images converted by :func:`to_8bit`)."""
    return to_8bit(open_image(path), path).convert("RGB")


def read_grey(path: str | Path) -> np.ndarray:
    """Open an intensity image as a 2D uint8 array (see :func:`to_8bit`); colour images are refused.

    RGB images whose channels are all equal count as grey.

    Raises:
        DataPrepError: unreadable, colour, or holding non-finite values.
    """
    img = to_8bit(open_image(path), path)
    if img.mode == "RGB":
        arr = np.asarray(img)
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise DataPrepError(path, "expected a single-channel image, got colour", "save it as greyscale")
        return arr[..., 0].copy()
    return np.asarray(img).copy()


def read_mask(path: str | Path) -> np.ndarray:
    """Open a mask or label map as a 2D integer array of its label values, in any bit depth.

    * 1-bit masks give 0/1; 8-bit grey masks their values;
    * 16-bit (or 32-bit) masks whose maximum is 65535 are full-scale binary masks and are brought to 8 bits
      (``round(v / 257)``, so 0/65535 reads as 0/255); other wide masks keep their values (labels 0..K);
    * palette masks give the grey level of their palette when the palette is grey, and their palette indices
      (the usual class-index PNG) otherwise;
    * RGB masks are accepted when their three channels are equal.

    Raises:
        DataPrepError: unreadable, colour, non-integer or non-finite mask.
    """
    img = open_image(path)
    if img.mode == "1":
        return np.asarray(img).astype(np.uint8)
    if img.mode in ("P", "PA"):
        indices = np.asarray(img.convert("P") if img.mode == "PA" else img)
        palette = np.asarray(img.getpalette() or list(range(256)) * 3, dtype=np.uint8)
        palette = np.pad(palette, (0, max(0, 768 - palette.size)))[:768].reshape(256, 3)
        used = palette[np.unique(indices)]
        if np.array_equal(used[:, 0], used[:, 1]) and np.array_equal(used[:, 0], used[:, 2]):
            return palette[indices, 0]
        return indices.copy()
    if img.mode in ("RGB", "RGBA", "LA") or img.mode not in ("L", "F") and not img.mode.startswith("I"):
        return read_grey(path)
    arr = np.asarray(img)
    if arr.dtype.kind == "f":
        check_finite(path, arr)
        if not np.array_equal(arr, np.round(arr)):
            raise DataPrepError(path, "mask holds non-integer values", "save the mask with integer label values")
        arr = arr.astype(np.int64)
    if arr.dtype == np.uint8 or arr.size == 0:
        return arr.copy()
    high = int(arr.max())
    if high == 65535 and int(arr.min()) >= 0:
        return np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
    if high <= 255 and int(arr.min()) >= 0:
        return arr.astype(np.uint8)
    return arr.astype(np.int64)


def load_image(path: str | Path, role: str = "image") -> np.ndarray:
    """Read a 2D image or label file the way data_prep does, for training and inference code to share.

    PNG, JPEG, BMP and TIFF go through :func:`read_rgb`/:func:`read_grey` (images; 8-bit policy of
    :func:`intensity_to_uint8`) or :func:`read_mask` (labels); NIfTI through :func:`read_nifti`, which refuses
    non-finite voxels.

    Args:
        path: the file.
        role: ``"image"`` (intensities) or ``"label"`` (class values).

    Returns:
        a channel-first array, rows before columns: (C, H, W) float32 for images (C = 1 grey, 3 colour; NIfTI values
        as stored), (1, H, W) int64 for labels.

    Raises:
        DataPrepError: the file is missing, unreadable, colour where a label is expected or non-finite.
    """
    if role not in ("image", "label"):
        raise ValueError(f"role must be 'image' or 'label', not {role!r}")
    name = str(path).lower()
    if name.endswith((".nii", ".nii.gz")):
        data, _ = read_nifti(path)
        data = np.squeeze(data)
        if data.ndim != 2:
            raise DataPrepError(path, f"expected a 2D image, got shape {data.shape}", "pass a 2D slice")
        return (data[None].astype(np.int64) if role == "label" else data[None].astype(np.float32))
    if role == "label":
        return read_mask(path)[None].astype(np.int64)
    img = to_8bit(open_image(path), path)
    arr = np.asarray(img)
    return (arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)).astype(np.float32)


def check_label_values(path: str | Path, mask: np.ndarray, allowed: set[int]) -> None:
    """Raise a DataPrepError naming ``path`` when ``mask`` holds values outside ``allowed``."""
    found = {int(v) for v in np.unique(mask)}
    extra = sorted(found - set(allowed))
    if extra:
        raise DataPrepError(
            path,
            f"mask has unexpected values {extra[:10]} (allowed: {sorted(allowed)})",
            "check that this is the right mask file, or use --skip_bad",
        )


def check_same_size(image_path: str | Path, image_size: tuple, mask_path: str | Path, mask_size: tuple) -> None:
    """Raise a DataPrepError when an image and its mask differ in size (sizes as (height, width))."""
    if tuple(image_size) != tuple(mask_size):
        raise DataPrepError(
            mask_path,
            f"mask is {mask_size[0]}x{mask_size[1]} but its image {Path(image_path).name} is "
            f"{image_size[0]}x{image_size[1]} (height x width)",
            "masks must have the size of their image; re-export the mask or use --skip_bad",
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
        DataPrepError: the file is missing, truncated, not NIfTI, or holds NaN or infinite voxels.
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
            "re-download or remove the file, or use --skip_bad",
        ) from exc
    check_finite(path, data)  # NaN voxels would pass conversion and poison training silently
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
