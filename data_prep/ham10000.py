"""HAM10000 with the lesion masks of Tschandl et al. -> datalist of 7-class lesion masks.

Layout under ``--src`` (each location can be overridden with ``--images``, ``--masks`` and ``--metadata``)::

    HAM10000_images/ISIC_0024306.jpg          (or HAM10000_images_part_1/ + HAM10000_images_part_2/, or images/)
    HAM10000_segmentations_lesion_tschandl/ISIC_0024306_segmentation.png   (or masks/ISIC_0024306.png)
    HAM10000_metadata.csv                     lesion_id,image_id,dx[,dx_type,age,sex,localization]

Output masks hold 0 for background and, on the lesion, the index of the image's diagnosis in :data:`DX` (1 akiec ..
7 vasc), so one network learns where the lesion is and what it is. All images of a lesion (``lesion_id``) are kept
in one split and fold, and splits are stratified by ``dx``. There is no official split: ``--val_ratio`` and
``--test_ratio`` carve validation and testing out of the whole set.
"""

from __future__ import annotations

import csv
from pathlib import Path

from data_prep.datalist import Case
from data_prep.errors import DataPrepError
from data_prep.imageio import check_same_size, index_files, list_files
from data_prep.isic import IMAGE_SUFFIXES, open_source_image, read_lesion_mask, write_image, write_label

NAME = "ham10000"
DESCRIPTION = ("HAM10000 dermoscopy with Tschandl's lesion masks. Lesion pixels carry the diagnosis (7 classes), "
               "grouped by lesion_id.")
MODALITY = {"0": "dermoscopy (RGB)"}
DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
DX_NAMES = {
    "akiec": "actinic keratosis / intraepithelial carcinoma", "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis-like lesion", "df": "dermatofibroma", "mel": "melanoma", "nv": "melanocytic naevus",
    "vasc": "vascular lesion",
}
LABELS = {"0": "background", **{str(i + 1): dx for i, dx in enumerate(DX)}}
SOURCE = ("HAM10000 (Tschandl et al. 2018, Harvard Dataverse doi:10.7910/DVN/DBW86T) with the lesion masks "
          "HAM10000_segmentations_lesion_tschandl from the same dataverse (Tschandl et al. 2020)")

REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")
METADATA_NAMES = ("HAM10000_metadata.csv", "HAM10000_metadata", "metadata.csv")
IMAGE_DIRS = ("HAM10000_images", "HAM10000_images_part_1", "HAM10000_images_part_2", "images")
MASK_DIRS = ("HAM10000_segmentations_lesion_tschandl", "masks")
MASK_PATTERNS = ("{}_segmentation.png", "{}.png")
LAYOUT_HELP = ("HAM10000_images/ISIC_x.jpg (or HAM10000_images_part_1/ and _part_2/, or images/), "
               "HAM10000_segmentations_lesion_tschandl/ISIC_x_segmentation.png (or masks/ISIC_x.png) and "
               "HAM10000_metadata.csv")


def add_arguments(parser) -> None:
    """Options that override the autodetected locations (relative paths are tried against --src too)."""
    parser.add_argument("--metadata", default=None, help="metadata CSV (default: SRC/HAM10000_metadata.csv)")
    parser.add_argument("--images", nargs="+", default=None,
                        help="image folder(s) (default: SRC/HAM10000_images or HAM10000_images_part_1 and _part_2)")
    parser.add_argument("--masks", default=None,
                        help="mask folder (default: SRC/HAM10000_segmentations_lesion_tschandl or SRC/masks)")
    parser.epilog = "Expected layout under --src: " + LAYOUT_HELP


def _given(src: Path, value: str, what: str) -> Path:
    path = Path(value)
    for candidate in (path, src / path):
        if candidate.exists():
            return candidate
    raise DataPrepError(path, f"{what} not found (also looked in {src})", f"check the {what} path")


def locate(src: Path, options) -> tuple[Path, list[Path], Path]:
    """Find the metadata CSV, the image folders and the mask folder (options first, then the known names).

    Raises:
        DataPrepError: one of them is missing; the message lists the layout expected.
    """
    if getattr(options, "metadata", None):
        metadata = _given(src, options.metadata, "--metadata CSV")
    else:
        found = [src / n for n in METADATA_NAMES if (src / n).is_file()]
        if not found:
            raise DataPrepError(src, "no HAM10000_metadata.csv found",
                                f"pass --metadata, or lay out --src as: {LAYOUT_HELP}")
        metadata = found[0]
    if getattr(options, "images", None):
        image_dirs = [_given(src, v, "--images folder") for v in options.images]
    else:
        image_dirs = [src / n for n in IMAGE_DIRS if (src / n).is_dir()]
        if not image_dirs:
            raise DataPrepError(src, "no HAM10000 image folder found",
                                f"pass --images, or lay out --src as: {LAYOUT_HELP}")
    if getattr(options, "masks", None):
        mask_dir = _given(src, options.masks, "--masks folder")
    else:
        found = [src / n for n in MASK_DIRS if (src / n).is_dir()]
        if not found:
            raise DataPrepError(src, "no lesion mask folder found (HAM10000_segmentations_lesion_tschandl/)",
                                f"download the lesion masks and pass --masks, or lay out --src as: {LAYOUT_HELP}")
        mask_dir = found[0]
    return metadata, image_dirs, mask_dir


def read_metadata(path: Path) -> dict[str, dict]:
    """Read the metadata CSV: image_id -> row (with its line number under ``_line``).

    Rows with an unknown ``dx`` are kept with ``_problem`` set, so that ``--skip_bad`` can leave just them out.

    Raises:
        DataPrepError: the file is not a CSV with the required columns, or a row lacks an id or repeats one.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise DataPrepError(
                    path, f"metadata CSV lacks the column(s) {missing} (header: {columns[:8] or 'empty file'})",
                    f"use the HAM10000 metadata file; its header starts with {','.join(REQUIRED_COLUMNS)}",
                )
            reader.fieldnames = columns
            rows: dict[str, dict] = {}
            for row in reader:
                line = reader.line_num
                if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
                    raise DataPrepError(path, f"line {line}: expected {len(columns)} comma-separated fields",
                                        "repair the row or use the original metadata file")
                image_id, lesion_id, dx = (row[c].strip() for c in ("image_id", "lesion_id", "dx"))
                if not image_id or not lesion_id:
                    raise DataPrepError(path, f"line {line}: empty image_id or lesion_id", "fill in or remove the row")
                if image_id in rows:
                    first = rows[image_id]["_line"]
                    raise DataPrepError(path, f"line {line}: image_id {image_id} repeats line {first}",
                                        "remove the duplicate row")
                record = {"image_id": image_id, "lesion_id": lesion_id, "dx": dx, "_line": line}
                if dx not in DX:
                    record["_problem"] = f"line {line}: unknown dx {dx!r} for {image_id} (expected one of {list(DX)})"
                rows[image_id] = record
    except UnicodeDecodeError as exc:
        raise DataPrepError(path, f"is not a UTF-8 text CSV ({exc.reason})", "pass the metadata CSV") from exc
    except csv.Error as exc:
        raise DataPrepError(path, f"malformed CSV ({exc})", "repair the file or use the original") from exc
    if not rows:
        raise DataPrepError(path, "metadata CSV has no rows", "use the HAM10000 metadata file")
    return rows


def list_images(folders: list[Path]) -> dict[str, list[Path]]:
    """image id -> the image files with that id across ``folders`` (more than one is a duplicate)."""
    found: dict[str, list[Path]] = {}
    for folder in folders:
        for path in list_files(folder, IMAGE_SUFFIXES):
            found.setdefault(path.stem, []).append(path)
    return found


def find_cases(src: Path, options) -> list[Case]:
    """One case per image, grouped by lesion_id and stratified by dx; unpaired entries become failing cases.

    Raises:
        DataPrepError: missing folders or CSV, or a malformed CSV.
    """
    metadata, image_dirs, mask_dir = locate(src, options)
    rows = read_metadata(metadata)
    images = list_images(image_dirs)
    masks = {name: str(path) for name, path in index_files(mask_dir, (".png",)).items()}
    used: set[str] = set()
    cases = []
    for image_id in sorted(set(rows) | set(images)):
        row = rows.get(image_id)
        extra: dict = {"metadata": str(metadata)}
        if row is None:
            extra["problem"] = (None, f"image has no row in {metadata}", "add its row to the CSV or remove the image")
        elif image_id not in images:
            where = ", ".join(str(d) for d in image_dirs)
            extra["problem"] = (str(metadata), f"line {row['_line']}: image {image_id} not found in {where}",
                                "add the image or remove the row")
        elif "_problem" in row:
            extra["problem"] = (str(metadata), row["_problem"], "correct the dx or remove the row")
        else:
            extra["dx"] = row["dx"]
        lesion = row["lesion_id"] if row else ""
        stratum = row["dx"] if row else None
        for path in images.get(image_id) or [None]:
            inputs = {"image": str(path)} if path else {}
            names = [p.format(image_id).lower() for p in MASK_PATTERNS]
            mask = next((masks[name] for name in names if name in masks), None)
            if mask:
                inputs["label"] = mask
                used.add(Path(mask).name.lower())
            elif path and "problem" not in extra:
                expected = MASK_PATTERNS[0].format(image_id)
                extra = {**extra, "problem": (str(path), f"image has no mask {expected} in {mask_dir}",
                                              "add the mask or remove the image")}
            cases.append(Case(case_id=image_id, inputs=inputs, group_id=lesion, stratum=stratum, extra=extra))
    # a mask that no image or CSV row claims: most likely a renamed or lost image, so it is a bad case, not noise
    for name in sorted(set(masks) - used):
        stem = Path(masks[name]).stem
        image_id = stem[: -len("_segmentation")] if stem.lower().endswith("_segmentation") else stem
        if image_id in rows or image_id in images:
            continue  # a second mask of a known image (e.g. both name patterns): the first pattern wins
        problem = (masks[name], f"mask has no image {image_id}.* and no metadata row",
                   "add the image and its row, or remove the mask")
        cases.append(Case(case_id=f"orphan:{Path(masks[name]).name}", inputs={"label": masks[name]},
                          extra={"problem": problem}))
    return cases


def convert_case(case: Case, out: Path, options) -> list[dict]:
    """Check and write one image and its class mask (lesion pixels = dx index).

    Raises:
        DataPrepError: unpaired image, CSV row or mask, unknown dx, unreadable file, mask of another size or
            mask values that are not a binary lesion mask.
    """
    if "problem" in case.extra:
        path, problem, fix = case.extra["problem"]
        raise DataPrepError(path or case.inputs.get("image"), problem, fix)
    image_path, mask_path = case.inputs["image"], case.inputs["label"]
    max_size = getattr(options, "max_size", None)
    image, full_size = open_source_image(image_path, max_size)
    lesion = read_lesion_mask(mask_path)
    check_same_size(image_path, full_size, mask_path, lesion.shape)
    dx = case.extra["dx"]
    rel_image, size = write_image(image_path, image, full_size, out, case.case_id, max_size)
    rel_label, counts = write_label(lesion * (DX.index(dx) + 1), size, out, case.case_id)
    return [{"image": rel_image, "label": rel_label, "case_id": case.case_id, "class": dx,
             "_label_counts": counts, "_size": size}]
