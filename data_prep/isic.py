"""ISIC lesion segmentation (2016, 2017, 2018 Task 1, or a flat ``images/`` + ``masks/`` folder) -> datalist.

Layouts recognised under ``--src`` (the first that matches; ``python -m data_prep isic --help`` lists them too):

* ISIC 2016: ``ISBI2016_ISIC_Part1_{Training,Test}_Data/ISIC_x.jpg`` +
  ``ISBI2016_ISIC_Part1_{Training,Test}_GroundTruth/ISIC_x_Segmentation.png``;
* ISIC 2017: ``ISIC-2017_{Training,Validation,Test_v2}_Data/ISIC_x.jpg`` +
  ``ISIC-2017_{Training,Validation,Test_v2}_Part1_GroundTruth/ISIC_x_segmentation.png`` (``*_superpixels.png`` and
  CSV files in the data folders are ignored);
* ISIC 2018 Task 1: ``ISIC2018_Task1-2_{Training,Validation,Test}_Input/ISIC_x.jpg`` +
  ``ISIC2018_Task1_{Training,Validation,Test}_GroundTruth/ISIC_x_segmentation.png``;
* flat: ``images/<id>.jpg|png`` + ``masks/<id>_segmentation.png`` (or ``_Segmentation.png``, ``_mask.png``,
  ``<id>.png``), no official split.

Official splits are kept. A test data folder without its ground-truth folder gives unlabelled testing items; any other
data folder without ground truth is an error. Masks are binarised (see :func:`binary_lesion_mask`) and written as
PNG with values 0/1 under ``labels/``; images are hard-linked (or copied) unchanged under ``images/``, or with
``--max_size`` shrunk with LANCZOS (masks NEAREST) and saved as PNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from data_prep.datalist import Case
from data_prep.errors import DataPrepError
from data_prep.imageio import check_same_size, index_files, link_or_copy, list_files, open_image, read_mask, to_8bit

NAME = "isic"
DESCRIPTION = "ISIC dermoscopy lesion segmentation (2016, 2017, 2018 Task 1 or flat images/ + masks/). Binary masks."
MODALITY = {"0": "dermoscopy (RGB)"}
LABELS = {"0": "background", "1": "lesion"}
SOURCE = "ISIC Challenge lesion segmentation (Codella et al.), https://challenge.isic-archive.com"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# how a mask may be named, for image id <id>, most specific first
MASK_PATTERNS = ("{}_segmentation.png", "{}_Segmentation.png", "{}_mask.png", "{}.png")
IGNORED_SUFFIXES = ("_superpixels",)  # ISIC 2017 ships superpixel PNGs beside the images


@dataclass(frozen=True)
class Folder:
    """One data folder of a layout and where its ground truth lives."""

    data: str
    truth: str | None
    split: str | None


@dataclass(frozen=True)
class Layout:
    """A known on-disk layout: its name and folders."""

    name: str
    folders: tuple[Folder, ...]
    mask_suffix: str = "_segmentation.png"


LAYOUTS = (
    Layout("ISIC 2016", (
        Folder("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth", "training"),
        Folder("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth", "testing"),
    ), "_Segmentation.png"),
    Layout("ISIC 2017", tuple(
        Folder(f"ISIC-2017_{part}_Data", f"ISIC-2017_{part}_Part1_GroundTruth", split)
        for part, split in (("Training", "training"), ("Validation", "validation"), ("Test_v2", "testing"))
    )),
    Layout("ISIC 2018 Task 1", tuple(
        Folder(f"ISIC2018_Task1-2_{part}_Input", f"ISIC2018_Task1_{part}_GroundTruth", part.lower())
        for part in ("Training", "Validation", "Test")
    )),
    Layout("flat", (Folder("images", "masks", None),)),
)
# 2018's "Test" folder is the testing split
_SPLIT_NAMES = {"test": "testing"}


def layouts_help() -> str:
    """The recognised layouts, one a line, for error messages and --help."""
    lines = []
    for layout in LAYOUTS:
        first = layout.folders[0]
        lines.append(f"{layout.name}: {first.data}/ISIC_x.jpg + {first.truth}/ISIC_x{layout.mask_suffix}")
    return "; ".join(lines)


def add_arguments(parser) -> None:
    """No ISIC-specific options: the layout is recognised from the folder names."""
    parser.epilog = "Layouts recognised under --src: " + layouts_help()


def _split(folder: Folder) -> str | None:
    return _SPLIT_NAMES.get(folder.split, folder.split) if folder.split else None


def list_images(folder: Path) -> list[Path]:
    """Image files of a data folder, sorted; superpixel PNGs, CSV, text and hidden files are skipped.

    Extensions are matched case-insensitively (``ISIC_1.JPG`` is an image).
    """
    return [p for p in list_files(folder, IMAGE_SUFFIXES) if not p.stem.endswith(IGNORED_SUFFIXES)]


def mask_index(folder: Path) -> dict[str, Path]:
    """Lower-case file name -> path of the PNGs in a ground-truth folder (one listing instead of a stat per image)."""
    return index_files(folder, (".png",))


def find_mask(image_id: str, masks: dict[str, Path]) -> Path | None:
    """The mask of ``image_id`` among ``masks`` (see :data:`MASK_PATTERNS`; names compared case-insensitively)."""
    for pattern in MASK_PATTERNS:
        path = masks.get(pattern.format(image_id).lower())
        if path is not None:
            return path
    return None


def mask_id(name: str) -> str:
    """The image id a mask file name belongs to (``ISIC_1_segmentation.png`` -> ``ISIC_1``)."""
    stem = name[:-4]
    for suffix in ("_segmentation", "_mask"):
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def cases_of_folder(src: Path, folder: Folder, layout: Layout) -> list[Case]:
    """Cases of one data folder: images paired with masks; an unpaired image or mask becomes a case that fails.

    Raises:
        DataPrepError: a non-test data folder has no ground-truth folder.
    """
    data_dir = src / folder.data
    split = _split(folder)
    truth_dir = src / folder.truth if folder.truth else None
    has_truth = truth_dir is not None and truth_dir.is_dir()
    if not has_truth and split != "testing":
        raise DataPrepError(
            truth_dir or data_dir,
            f"ground-truth folder not found for the {layout.name} data folder {data_dir.name}",
            "unpack the ground-truth archive beside the data folder (only a test split may lack ground truth)",
        )
    masks = mask_index(truth_dir) if has_truth else {}
    cases, used = [], set()
    extra = {"layout": layout.name, "truth_dir": str(truth_dir) if has_truth else None}
    for image in list_images(data_dir):
        inputs = {"image": str(image)}
        mask = find_mask(image.stem, masks) if has_truth else None
        if mask is not None:
            inputs["label"] = str(mask)
            used.add(mask.name.lower())
        cases.append(Case(case_id=image.stem, inputs=inputs, split=split, extra=extra))
    images = {c.case_id: c.inputs.get("label") for c in cases}
    for name in sorted(set(masks) - used):
        image_id = mask_id(masks[name].name)
        orphan = {"layout": layout.name, "orphan_mask": image_id, "paired_with": images.get(image_id)}
        # a second mask of a paired image gets its own (failing) case instead of a confusing duplicate id
        case_id = image_id if image_id not in images else name
        cases.append(Case(case_id=case_id, inputs={"label": str(masks[name])}, split=split, extra=orphan))
    return cases


def find_cases(src: Path, options) -> list[Case]:
    """List the cases of every recognised layout under ``src``.

    Raises:
        DataPrepError: no recognised layout, or a data folder that lacks its ground truth.
    """
    cases: list[Case] = []
    for layout in LAYOUTS:
        for folder in layout.folders:
            if (src / folder.data).is_dir():
                cases += cases_of_folder(src, folder, layout)
    if not cases:
        present = [p.name for p in list_files(src)][:8] + sorted(p.name for p in src.iterdir() if p.is_dir())[:8]
        raise DataPrepError(
            src,
            f"no ISIC images found (it holds {present or 'nothing'})",
            f"point --src at a folder laid out as one of: {layouts_help()}",
        )
    return cases


def binary_lesion_mask(path: str | Path, mask: np.ndarray) -> np.ndarray:
    """Binarise a lesion mask as ISIC defines it (> 127 is lesion), refusing masks that are not binary masks.

    Accepted: 0/255 masks (16-bit 0/65535 masks read as 0/255, see :func:`data_prep.imageio.read_mask`); 0/1 masks
    (1 is lesion); and 0/255 masks with grey values on the lesion's edge, as
    resizing with anti-aliasing leaves them (a grey pixel must lie within ``max(2, 1 %`` of the long side) pixels of
    the thresholded edge). Grey values away from the edge mean a label map of several classes or a wrong file.

    Args:
        path: the mask file, named in errors.
        mask: the mask as a 2D array.

    Returns:
        a uint8 array with 1 on the lesion and 0 elsewhere.

    Raises:
        DataPrepError: the mask holds values that a binary lesion mask cannot.
    """
    if mask.dtype == np.uint8:  # a histogram is much faster than np.unique on 8-bit masks
        values = set(np.flatnonzero(np.bincount(mask.ravel(), minlength=256)).tolist())
    else:
        values = set(np.unique(mask).tolist())
    if values <= {0, 1}:
        return mask.astype(np.uint8)
    lesion = mask > 127
    grey = (mask != 0) & (mask != 255)
    if grey.any():
        tolerance = max(2, round(0.01 * max(mask.shape)))
        far = grey & ~_near_edge(lesion, tolerance)
        if far.any():
            odd = sorted({int(v) for v in np.unique(mask[far])})
            raise DataPrepError(
                path,
                f"mask has values {odd[:10]} on {int(far.sum())} pixels away from the lesion's edge; a lesion mask "
                "holds 0 and 255 (or 0 and 1), with grey values only on the edge",
                "check that this is a binary lesion mask (not a label map of several classes), or use --skip_bad",
            )
    return lesion.astype(np.uint8)


def _near_edge(lesion: np.ndarray, tolerance: int) -> np.ndarray:
    """Pixels within ``tolerance`` (chessboard distance) of a lesion/background edge."""
    edge = np.zeros_like(lesion)
    edge[:-1] |= lesion[:-1] != lesion[1:]
    edge[1:] |= lesion[:-1] != lesion[1:]
    edge[:, :-1] |= lesion[:, :-1] != lesion[:, 1:]
    edge[:, 1:] |= lesion[:, :-1] != lesion[:, 1:]
    return _dilate(edge, tolerance)


def _dilate(binary: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation by ``radius`` pixels with a summed-area table: linear in the image size whatever the radius."""
    size = 2 * radius + 1
    table = np.pad(np.pad(binary.astype(np.int32), radius).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    box = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    return box > 0


def read_lesion_mask(path: str | Path) -> np.ndarray:
    """Read a lesion mask file in any bit depth as a 0/1 uint8 array (see :func:`binary_lesion_mask`)."""
    return binary_lesion_mask(path, read_mask(path))


def target_size(size: tuple[int, int], max_size: int | None) -> tuple[int, int]:
    """The (height, width) of an image of ``size`` shrunk so that its long side is at most ``max_size``."""
    if not max_size or max(size) <= max_size:
        return tuple(size)
    scale = max_size / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def open_source_image(path: str | Path, max_size: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode an image fully (a truncated file fails here), JPEGs at a reduced scale when they will be shrunk.

    A JPEG at least twice ``max_size`` is decoded with PIL's ``draft`` (DCT scaling, as ``Image.thumbnail`` does),
    several times faster for multi-megapixel photographs; the LANCZOS resize then works from that.

    Args:
        path: the image file.
        max_size: the long-side limit of the output, or None.

    Returns:
        the decoded image and the file's full (height, width).

    Raises:
        DataPrepError: the file is missing, truncated or not an image.
    """
    if not max_size:
        image = open_image(path)
        return image, (image.height, image.width)
    if not Path(path).is_file():
        open_image(path)  # raises the usual "file not found"
    try:
        image = Image.open(path)
        full = (image.height, image.width)
        if image.format == "JPEG" and image.mode == "RGB" and max(full) >= 2 * max_size:
            height, width = target_size(full, max_size)
            image.draft("RGB", (width, height))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataPrepError(
            path, f"cannot be read as an image ({exc})", "re-download or remove the file, or use --skip_bad"
        ) from exc
    return image, full


def write_image(
    src: str | Path, image: Image.Image, full_size: tuple[int, int], out: Path, case_id: str, max_size: int | None
) -> tuple[str, tuple[int, int]]:
    """Put the image under ``out/images``: linked unchanged, or re-encoded as PNG when shrunk or not RGB.

    Args:
        src: the source image file.
        image: the decoded source image (possibly decoded at a reduced scale, see :func:`open_source_image`).
        full_size: the source image's (height, width).
        out: the output folder.
        case_id: file name stem.
        max_size: long-side limit in pixels, or None.

    Returns:
        the path relative to ``out`` and the written (height, width).
    """
    size = target_size(full_size, max_size)
    if image.mode == "RGB" and size == tuple(full_size) and image.size == (full_size[1], full_size[0]):
        rel = f"images/{case_id}{Path(src).suffix.lower()}"
        link_or_copy(src, out / rel)
        return rel, size
    image = to_8bit(image, src).convert("RGB")  # grey, palette, 16-bit or RGBA: give every bundle 3 channels
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    rel = f"images/{case_id}.png"
    (out / "images").mkdir(parents=True, exist_ok=True)
    image.save(out / rel, format="PNG")
    return rel, size


def write_label(mask: np.ndarray, size: tuple, out: Path, case_id: str) -> tuple[str, dict[int, int]]:
    """Write a class mask resized (NEAREST) to ``size`` (height, width); returns its path and pixel counts."""
    img = Image.fromarray(mask)
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.NEAREST)
    rel = f"labels/{case_id}.png"
    (out / "labels").mkdir(parents=True, exist_ok=True)
    img.save(out / rel, format="PNG")
    counts = np.bincount(np.asarray(img).ravel())
    return rel, {int(v): int(c) for v, c in enumerate(counts) if c}


def convert_case(case: Case, out: Path, options) -> list[dict]:
    """Check and write one image and its binarised mask.

    Raises:
        DataPrepError: unreadable image or mask, mask of another size, image without mask (outside an unlabelled
            test folder), mask without image, or mask values that are not a binary mask.
    """
    if case.extra.get("orphan_mask"):
        image_id, paired_with = case.extra["orphan_mask"], case.extra.get("paired_with")
        if paired_with:
            raise DataPrepError(case.inputs["label"], f"a second mask for image {image_id} (it uses {paired_with})",
                                "keep one mask per image")
        raise DataPrepError(case.inputs["label"], f"mask has no image {image_id}.* in the data folder",
                            "add the image or remove the mask")
    image_path = case.inputs["image"]
    if "label" not in case.inputs and case.extra.get("truth_dir"):
        expected = " or ".join(p.format(case.case_id) for p in MASK_PATTERNS[:2])
        raise DataPrepError(image_path, f"image has no mask {expected} in {case.extra['truth_dir']}",
                            "add the mask or remove the image")
    max_size = getattr(options, "max_size", None)
    image, full_size = open_source_image(image_path, max_size)
    mask = None
    if "label" in case.inputs:  # check everything before writing, so that a bad case leaves no file behind
        mask_path = case.inputs["label"]
        mask = read_lesion_mask(mask_path)
        check_same_size(image_path, full_size, mask_path, mask.shape)
    rel_image, size = write_image(image_path, image, full_size, out, case.case_id, max_size)
    item = {"image": rel_image, "case_id": case.case_id, "_size": size}
    if mask is not None:
        item["label"], item["_label_counts"] = write_label(mask, size, out, case.case_id)
    return [item]
