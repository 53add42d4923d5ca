"""Datalist and image-folder readers for bundle configs, ending the run cleanly on bad input."""

from __future__ import annotations

from pathlib import Path

from medseg.bundle.errors import BundleInputError

# suffixes an inference folder may hold, longest first so ".nii.gz" wins over ".gz"
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def load_datalist(path: str | Path, section: str = "training", require_label: bool = True) -> list[dict]:
    """:func:`medseg.data.load_datalist` for configs: a bad datalist ends the run with its message.

    Args:
        path: the ``datalist.json`` written by ``python -m data_prep``.
        section: ``training``, ``validation`` or ``testing``.
        require_label: whether every item must have a ``label``.

    Returns:
        the section's items with absolute paths.

    Raises:
        BundleInputError: the datalist is missing, malformed, lacks the section or labels, or lists a file that
            is not on disk (checked here, before MONAI's loaders would fail deep inside caching or a worker).
    """
    from medseg.data import DatalistError
    from medseg.data import load_datalist as _load

    try:
        items = _load(path, section, require_label=require_label)
    except DatalistError as exc:
        raise BundleInputError(f"DatalistError: {exc}") from None
    listed = [item[key] for item in items for key in ("image", "label") if key in item]
    missing = [file for file in listed if not Path(file).exists()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise BundleInputError(
            f"{path}: its {section!r} section lists {missing[0]}{more}, not on disk; restore the file(s) or "
            "convert the dataset again with python -m data_prep"
        )
    return items


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")


def training_cases(path: str | Path, train_on_validation: bool = False) -> list[dict]:
    """The cases a run trains on: the datalist's ``training`` section, and with ``train_on_validation`` its
    ``validation`` section too (the final fit on every labelled case once a recipe is chosen; validation then runs
    on trained-on cases, so its scores are no longer held-out scores).

    Configs call it as ``"train_datalist": "$medseg.bundle.training_cases(@datalist, @train_on_validation)"``.

    Raises:
        BundleInputError: ``train_on_validation`` is not true or false, or a section is missing or bad
            (:func:`load_datalist`).
    """
    cases = load_datalist(path, "training")
    return cases + load_datalist(path, "validation") if check_train_on_validation(train_on_validation) else cases


def check_train_on_validation(value: object) -> bool:
    """``value`` if it is a valid ``train_on_validation`` setting (true or false).

    Raises:
        BundleInputError: ``--train_on_validation 'yes': must be true or false``.
    """
    if not isinstance(value, bool):
        raise BundleInputError(f"--train_on_validation {value!r}: must be true or false")
    return value


def list_images(folder: str | Path) -> list[dict]:
    """List the images of a folder as inference items ``{"image": path}``, sorted by name.

    Args:
        folder: a folder of images (PNG, JPEG, NIfTI, ...): the ``--dataset_dir`` of ``inference.json``.

    Returns:
        one item per image.

    Raises:
        BundleInputError: the folder does not exist or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleInputError(f"{folder}: image folder not found; pass --dataset_dir FOLDER_OF_IMAGES")
    files = sorted(p for p in folder.iterdir() if p.is_file() and _suffix(p) and not p.name.startswith("."))
    if not files:
        raise BundleInputError(
            f"{folder}: no image found (looked for {', '.join(IMAGE_SUFFIXES)}); pass --dataset_dir FOLDER_OF_IMAGES"
        )
    return [{"image": str(p.resolve())} for p in files]


def output_extension(items: list[dict], nifti: str = ".nii.gz", other: str = ".png") -> str:
    """The mask format for a set of inputs: NIfTI for NIfTI images (keeping their geometry), else PNG.

    Args:
        items: inference items with an ``image`` path.
        nifti: extension used when every input is NIfTI.
        other: extension used when no input is NIfTI.

    Returns:
        the extension for ``SaveImaged(output_ext=...)``.

    Raises:
        BundleInputError: the folder mixes NIfTI and other images.
    """
    kinds = {_suffix(Path(i["image"])).startswith(".nii") for i in items}
    if len(kinds) > 1:
        raise BundleInputError("the image folder mixes NIfTI and 2D image files; run inference on each kind apart")
    return nifti if kinds == {True} else other
