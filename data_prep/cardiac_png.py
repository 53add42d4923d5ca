"""2D short-axis cardiac MRI slices stored as PNG (96x96 grey image + mask with values 0..3).

Expected layout (the coursework derivative of ACDC)::

    SRC/train/image/cmr1.png         8-bit grey slice
    SRC/train/mask/cmr1_mask.png     0 background, 1 right ventricle, 2 myocardium, 3 left ventricle
    SRC/val/image/... SRC/val/mask/...          optional
    SRC/test/image/...                           optional; masks optional (items without ``label``)

File names are matched case-insensitively (``cmr5.PNG``, ``cmr5_MASK.png``); hidden files (``.DS_Store``,
``._cmr5.png``)
are ignored. A mask without its image is a bad case (an error, or left out and listed with ``--skip_bad``): it
usually means a lost or renamed image. 16-bit and palette images are converted to 8 bits by
:func:`data_prep.imageio.intensity_to_uint8` (never clipped).

``train/``, ``val/`` and ``test/`` are kept as the official training, validation and testing splits; the
splits a folder lacks are carved from ``train/`` by ``--val_ratio`` and ``--test_ratio``. Images are
linked (or copied) to ``out/images``; masks are checked and rewritten as 8-bit PNG to ``out/labels``.

Which patient a slice comes from is not recorded in this layout, so each slice is its own group
(``group_id`` = case id ``cmrN``): slices of one patient may land in different splits and folds, which
makes validation scores optimistic compared with a patient-wise split such as the ``acdc`` converter's.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from data_prep.datalist import Case
from data_prep.errors import DataPrepError
from data_prep.imageio import (
    check_label_values,
    check_same_size,
    index_files,
    link_or_copy,
    list_files,
    open_image,
    read_grey,
    read_mask,
    write_png,
)

NAME = "cardiac-png"
DESCRIPTION = "2D short-axis cardiac MRI slices as PNG (right ventricle, myocardium, left ventricle)."
MODALITY = {"0": "MRI"}
LABELS = {"0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle"}
SOURCE = "2D slices derived from ACDC (Bernard et al., IEEE TMI 2018)"

SPLIT_FOLDERS = {"train": "training", "val": "validation", "test": "testing"}
_NUMBER = re.compile(r"(\d+)")


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in _NUMBER.split(path.stem))


def find_cases(src: Path, options) -> list[Case]:
    """List one case per image in ``train|val|test/image``.

    Raises:
        DataPrepError: none of ``train/image``, ``val/image``, ``test/image`` exists.
    """
    src = Path(src)
    present = [folder for folder in SPLIT_FOLDERS if (src / folder / "image").is_dir()]
    if not present:
        raise DataPrepError(
            src,
            "no train/image, val/image or test/image folder",
            "pass the folder that holds train/ (with image/ and mask/) as --src",
        )
    cases = []
    for folder in present:
        mask_dir = src / folder / "mask"
        masks = index_files(mask_dir, (".png",)) if mask_dir.is_dir() else {}
        used = set()
        for image in sorted(list_files(src / folder / "image", (".png",)), key=_natural_key):
            name = f"{image.stem}_mask.png".lower()
            inputs = {"image": str(image)}
            if name in masks:
                inputs["label"] = str(masks[name])
                used.add(name)
            elif folder != "test":
                inputs["label"] = str(mask_dir / f"{image.stem}_mask.png")  # reported missing by convert_case
            cases.append(Case(case_id=image.stem, inputs=inputs, split=SPLIT_FOLDERS[folder]))
        for name in sorted(set(masks) - used):
            mask = masks[name]
            stem = mask.stem[: -len("_mask")] if mask.stem.lower().endswith("_mask") else mask.stem
            cases.append(Case(case_id=f"{folder}/{mask.name}", inputs={"label": str(mask)},
                              split=SPLIT_FOLDERS[folder], extra={"orphan_of": stem}))
    return cases


def convert_case(case: Case, out: Path, options) -> list[dict]:
    """Link the image to ``out/images`` and write its checked mask to ``out/labels``.

    Raises:
        DataPrepError: a corrupt or colour image, a missing mask (train and val), a mask of another
            size than its image, or mask values outside 0..3.
    """
    if "orphan_of" in case.extra:
        raise DataPrepError(case.inputs["label"], f"mask has no image {case.extra['orphan_of']}.png in "
                            f"{Path(case.inputs['label']).parent.parent / 'image'}", "add the image or remove the mask")
    image_path = Path(case.inputs["image"])
    pixels = read_grey(image_path)  # raises for unreadable and colour images; 16-bit scaled, never clipped
    item = {"image": f"images/{case.case_id}.png", "_size": tuple(int(s) for s in pixels.shape)}
    if open_image(image_path).mode == "L":
        link_or_copy(image_path, out / item["image"])
    else:  # grey stored as RGB, palette or 16-bit: write one 8-bit channel, as the networks expect one channel
        write_png(pixels, out / item["image"])
    if "label" in case.inputs:
        mask_path = Path(case.inputs["label"])
        if not mask_path.is_file():
            raise DataPrepError(
                mask_path,
                f"mask not found for {image_path.name}",
                "add the mask (every train/ and val/ image needs one) or use --skip_bad",
            )
        mask = read_mask(mask_path)
        check_same_size(image_path, pixels.shape, mask_path, mask.shape)
        check_label_values(mask_path, mask, {int(k) for k in LABELS})
        item["label"] = f"labels/{case.case_id}_mask.png"
        write_png(mask, out / item["label"])
        values, counts = np.unique(mask, return_counts=True)
        found = dict(zip(values.tolist(), counts.tolist(), strict=True))
        item["_label_counts"] = {int(k): int(found.get(int(k), 0)) for k in LABELS}
    return [item]
