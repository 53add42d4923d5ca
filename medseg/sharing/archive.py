"""Safe zip extraction and creation for bundles.

A zip received from someone else may hold entries that escape the destination (absolute paths, ``..``) or
symbolic links; :func:`safe_extract` refuses all of them before writing anything, extracts into a temporary
folder beside the destination and renames it into place only when every entry was written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

from medseg.sharing.errors import SharingError

METADATA_RELPATH = Path("configs") / "metadata.json"


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an entry must not be extracted, or None when it is safe."""
    name = info.filename
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("/", "\\")):
        return "is an absolute path"
    if ".." in posix.parts or ".." in windows.parts:
        return "contains a '..' component"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    # zip writers that record no file type (only permission bits) make plain files
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "is not a regular file or folder"
    return None


def check_zip(zip_path: str | Path) -> list[zipfile.ZipInfo]:
    """List a zip's entries after checking that every one of them is safe to extract.

    Args:
        zip_path: the archive.

    Returns:
        its entries.

    Raises:
        SharingError: the file is missing, not a zip, or has an entry that is absolute, holds ``..`` or is a
            link (the error names the first such entry).
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise SharingError(zip_path, "file not found", "check the path")
    if not zipfile.is_zipfile(zip_path):
        raise SharingError(zip_path, "not a zip archive", "pass a bundle folder or the .zip made by 'medseg package'")
    with zipfile.ZipFile(zip_path) as archive:
        infos = archive.infolist()
    for info in infos:
        reason = _unsafe_reason(info)
        if reason:
            raise SharingError(
                zip_path,
                f"refused: the entry {info.filename!r} {reason}, so extracting it could write outside the bundle",
                "ask the sender for an archive made by 'medseg package'",
            )
    return infos


def safe_extract(zip_path: str | Path, dest: str | Path) -> Path:
    """Extract a zip into ``dest`` (which must not exist yet) after checking every entry.

    Args:
        zip_path: the archive.
        dest: the folder to create.

    Returns:
        ``dest``.

    Raises:
        SharingError: an unsafe archive (see :func:`check_zip`), an existing ``dest``, or a failed write
            (then nothing is left at ``dest``).
    """
    zip_path, dest = Path(zip_path), Path(dest)
    infos = check_zip(zip_path)
    if dest.exists():
        raise SharingError(dest, "already exists", "choose a new folder to extract into")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        root = staging.resolve()
        with zipfile.ZipFile(zip_path) as archive:
            for info in infos:
                target = (staging / info.filename).resolve()
                if root not in target.parents and target != root:  # belt and braces after check_zip
                    raise SharingError(zip_path, f"refused: the entry {info.filename!r} escapes the destination")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        os.replace(staging, dest)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SharingError(zip_path, f"corrupt zip archive ({exc})", "ask the sender for a new copy") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def make_zip(folder: str | Path, zip_path: str | Path) -> Path:
    """Zip a folder (entries relative to its parent, so the zip holds one top folder), written atomically.

    Args:
        folder: the bundle folder.
        zip_path: the archive to write; replaced only once complete.

    Returns:
        ``zip_path``.
    """
    folder, zip_path = Path(folder), Path(zip_path)
    tmp = zip_path.with_name(f".{zip_path.name}.partial-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_symlink():
                    raise SharingError(path, "is a symbolic link; a shared bundle must hold plain files only")
                if path.is_file():
                    archive.write(path, str(PurePosixPath(folder.name, *path.relative_to(folder).parts)))
        os.replace(tmp, zip_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return zip_path


def find_bundle_root(folder: str | Path, origin: str | Path | None = None) -> Path:
    """The bundle folder inside ``folder``: ``folder`` itself or its only sub-folder holding ``configs/metadata.json``.

    Args:
        folder: a bundle folder or an extracted archive.
        origin: what the user passed (for the error message); defaults to ``folder``.

    Raises:
        SharingError: no bundle, or more than one, inside ``folder``.
    """
    folder = Path(folder)
    if (folder / METADATA_RELPATH).is_file():
        return folder
    candidates = [p for p in sorted(folder.iterdir()) if p.is_dir() and (p / METADATA_RELPATH).is_file()]
    if len(candidates) == 1:
        return candidates[0]
    problem = "holds several bundles" if candidates else f"is not a MONAI bundle (no {METADATA_RELPATH.as_posix()})"
    raise SharingError(origin or folder, problem, "pass a bundle folder or the .zip made by 'medseg package'")


@contextlib.contextmanager
def open_bundle(path: str | Path) -> Iterator[Path]:
    """Yield the bundle folder of a folder or a zip; a zip is extracted safely into a temporary folder.

    Args:
        path: a bundle folder or ``.zip``.

    Raises:
        SharingError: the path is missing, not a bundle, or an unsafe archive.
    """
    path = Path(path)
    if path.is_dir():
        yield find_bundle_root(path)
        return
    if not path.exists():
        raise SharingError(path, "not found", "pass a bundle folder or a .zip made by 'medseg package'")
    with tempfile.TemporaryDirectory(prefix="medseg-bundle-") as tmp:
        extracted = safe_extract(path, Path(tmp) / "bundle")
        yield find_bundle_root(extracted, origin=path)
