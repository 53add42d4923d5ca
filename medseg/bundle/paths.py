"""Where a bundle lives, so its configs run from the bundle folder or from the repository root."""

from __future__ import annotations

from pathlib import Path


def bundle_root(name: str) -> str:
    """The folder of bundle ``name`` (the default of each config's ``bundle_root``; override with --bundle_root).

    Looks, in order, at the current folder (running from inside the bundle, as the model zoo does),
    ``./bundles/<name>`` (running from the repository root) and the ``bundles/`` folder beside the
    installed ``medseg`` package (an editable install of the repository).

    Args:
        name: the bundle's folder name, e.g. ``cardiac_unet``.

    Returns:
        the bundle folder as a string (``.`` when running from inside it).
    """
    here = Path.cwd()
    if (here / "configs" / "metadata.json").is_file() and here.name == name:
        return "."
    for candidate in (here / "bundles" / name, Path(__file__).resolve().parents[2] / "bundles" / name):
        if (candidate / "configs").is_dir():
            return str(candidate)
    return "."
