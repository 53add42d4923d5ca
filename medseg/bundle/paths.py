"""Where bundles are found and where their runs write: one rule for every command and config.

A bundle given by name is looked for, in order, in

1. the path itself, when it is a folder holding ``configs/`` (an explicit path always wins);
2. ``./bundles/<name>``: the current folder's bundles (a clone of the repository, or an exported copy);
3. the bundles installed with medseg (``medseg.bundles``, shipped inside the wheel).

Runs never write into a bundle: by default their outputs go to the workspace, ``./medseg_work/<bundle>/<run>/``
(``MEDSEG_WORK`` moves it).
"""

from __future__ import annotations

import os
from pathlib import Path

from medseg.bundle.errors import BundleInputError

WORKSPACE_ENV = "MEDSEG_WORK"


def installed_bundles_dir() -> Path:
    """The bundles installed with medseg: ``medseg/bundles`` in a wheel, the repository's ``bundles/`` in a checkout.

    (The folder is data, not a Python package, so it is found beside ``medseg``'s own files rather than imported.)
    """
    package = Path(__file__).resolve().parents[1]
    wheel, checkout = package / "bundles", package.parent / "bundles"
    return wheel if wheel.is_dir() or not checkout.is_dir() else checkout


def bundles_dirs() -> list[tuple[Path, str]]:
    """The bundles folders searched, in order, each with a word on where it is."""
    local = Path.cwd() / "bundles"
    installed = installed_bundles_dir()
    found = [(local, "current folder")] if local.is_dir() else []
    if not local.is_dir() or local.resolve() != installed.resolve():
        found.append((installed, "installed with medseg"))
    return found


def available_bundles() -> list[str]:
    """Names of every bundle the rule can find (current folder's and installed)."""
    return sorted({p.parent.parent.name for folder, _ in bundles_dirs() for p in folder.glob("*/configs/*.json")})


def find_bundle(bundle: str | os.PathLike) -> tuple[Path, str]:
    """Resolve a bundle name or folder by the rule above.

    Args:
        bundle: a bundle name such as ``cardiac_unet``, or a folder holding ``configs/``.

    Returns:
        ``(folder, where)``: the resolved folder and a word on where it was found, for the user.

    Raises:
        BundleInputError: no such bundle (the message lists the ones that exist).
    """
    path = Path(bundle)
    if (path / "configs").is_dir():
        return path.resolve(), "given path"
    if len(path.parts) == 1:
        for folder, where in bundles_dirs():
            if (folder / path.name / "configs").is_dir():
                return (folder / path.name).resolve(), where
    searched = ", ".join(str(folder) for folder, _ in bundles_dirs())
    raise BundleInputError(
        f"{bundle}: not a bundle (no configs/ there, nor under {searched}); pass a bundle name "
        f"({', '.join(available_bundles()) or 'none found'}) or a bundle folder"
    )


def shared_file(*parts: str) -> Path:
    """A file beside the bundles (``strategies/onecycle.json``, ``schema/meta_schema.json``), by the same rule."""
    for folder, _ in bundles_dirs():
        if (folder.joinpath(*parts)).exists():
            return folder.joinpath(*parts)
    return installed_bundles_dir().joinpath(*parts)


def bundle_root(name: str) -> str:
    """The folder of bundle ``name`` (the default of each config's ``bundle_root``; override with --bundle_root).

    Running from inside the bundle folder (as the model zoo does) gives ``.``; otherwise the rule above.

    Args:
        name: the bundle's folder name, e.g. ``cardiac_unet``.
    """
    here = Path.cwd()
    if (here / "configs" / "metadata.json").is_file() and here.name == name:
        return "."
    try:
        return str(find_bundle(name)[0])
    except BundleInputError:
        return "."


def workspace() -> Path:
    """The folder runs write to by default: ``$MEDSEG_WORK``, else ``./medseg_work``."""
    return Path(os.environ.get(WORKSPACE_ENV) or "medseg_work").absolute()


def run_dir(bundle_name: str, run_name: str) -> str:
    """A run's own output folder, ``<workspace>/<bundle>/<run name>`` (configs' default ``output_dir``)."""
    return str(workspace() / bundle_name / run_name)


def latest_checkpoint(
    bundle_name: str, bundle_root: str | os.PathLike | None = None, filename: str = "model.pt"
) -> str:
    """The checkpoint evaluation and inference use by default (configs' ``ckpt_path``).

    A bundle that carries its weights (``<bundle_root>/models/model.pt``: a packaged or model-zoo bundle) uses them;
    otherwise the newest ``filename`` among the bundle's runs in the workspace. With neither, the path where runs
    would be (``<workspace>/<bundle>/model.pt``, absent): resolving a config never fails, and the checkpoint loader
    says "checkpoint not found; train the bundle first or pass --ckpt_path" when the run needs it.
    """
    shipped = Path(bundle_root) / "models" / filename if bundle_root else None
    if shipped is not None and shipped.is_file():
        return str(shipped)
    found = sorted((workspace() / bundle_name).glob(f"*/{filename}"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else str(workspace() / bundle_name / filename)
