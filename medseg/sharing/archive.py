"""Safe zip extraction and creation for bundles.

A zip received from someone else may hold entries that escape the destination (absolute paths, ``..``) or
symbolic links, may be far larger once extracted than it looks (a 300 MB entry of zeros compresses to a few
hundred kB), or may hold archives of its own. :func:`safe_extract` refuses all of them before writing anything
(limits: :class:`ExtractionLimits`, configurable), counts bytes again while writing (a header may lie), extracts
into a temporary folder beside the destination and renames it into place only when every entry was written.

PyTorch's own ``.pt``/``.ts`` files are zip files; they are allowed under ``models/`` only (the MONAI bundle's
weights, read weights-only and only with ``--trust``); ``medseg predict`` reads safetensors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from medseg.sharing.errors import SharingError

METADATA_RELPATH = Path("configs") / "metadata.json"
MB = 1024 * 1024
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".lz4", ".jar", ".whl")
# magic bytes of archive and compressed formats, at their offsets
ARCHIVE_MAGIC = (
    (0, b"PK\x03\x04", "zip"), (0, b"PK\x05\x06", "zip"), (0, b"\x1f\x8b", "gzip"), (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"), (0, b"7z\xbc\xaf\x27\x1c", "7z"), (0, b"Rar!", "rar"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"), (257, b"ustar", "tar"),
)  # fmt: skip
# the MONAI bundle's weights are PyTorch files, which are zip archives; only these two names are exempt
TORCH_FILES = ("models/model.pt", "models/model.ts")


@dataclass(frozen=True)
class ExtractionLimits:
    """What a received archive may hold (``medseg check-bundle/predict --max_total_mb --max_file_mb --max_files``).

    Defaults fit a k-fold ensemble of ResNet-34 FlexibleUNets with its MONAI bundle (about 100 MB per fold).
    """

    max_total_bytes: int = 2048 * MB
    max_file_bytes: int = 256 * MB
    max_files: int = 512

    @classmethod
    def from_mb(cls, total_mb: float | None = None, file_mb: float | None = None, files: int | None = None):
        default = cls()
        return cls(
            int(total_mb * MB) if total_mb else default.max_total_bytes,
            int(file_mb * MB) if file_mb else default.max_file_bytes,
            int(files) if files else default.max_files,
        )


def pickle_reason(rel: str, head: bytes) -> str | None:
    """Why a file inside a package is refused as a Python pickle (which runs code when loaded), or None."""
    if rel in TORCH_FILES:
        return None
    if rel.lower().endswith((".pkl", ".pickle")) or (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return "is a Python pickle, which runs code when loaded; a package holds none"
    if head.startswith(b"\x93NUMPY") and b"'descr': '|O'" in head:
        return "is a NumPy object array (a pickle, which runs code when loaded); a package holds none"
    return None


def nested_archive_reason(rel: str, head: bytes) -> str | None:
    """Why a file inside a package is refused as an archive (by name or by its first bytes), or None."""
    name = rel.lower()
    if rel in TORCH_FILES:
        return None  # PyTorch's own (zip) format for the MONAI bundle's weights
    if name.endswith(ARCHIVE_SUFFIXES):
        return "is an archive inside the package (nested archives are refused)"
    for offset, magic, kind in ARCHIVE_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return f"is a {kind} archive inside the package (nested archives are refused)"
    return None


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


def check_zip(zip_path: str | Path, limits: ExtractionLimits | None = None) -> list[zipfile.ZipInfo]:
    """List a zip's entries after checking that every one of them is safe to extract.

    Args:
        zip_path: the archive.
        limits: size and count limits (default :class:`ExtractionLimits`).

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
    limits = limits or ExtractionLimits()
    fix = "ask the sender for an archive made by 'medseg package'"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            infos = archive.infolist()
            heads = {i.filename: _entry_head(archive, i) for i in infos if not i.is_dir() and not _unsafe_reason(i)}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
        raise SharingError(zip_path, f"corrupt zip archive ({exc})", "ask the sender for a new copy") from exc
    for info in infos:
        reason = _unsafe_reason(info)
        if reason:
            where = "so extracting it could write outside the bundle"
            raise SharingError(zip_path, f"refused: the entry {info.filename!r} {reason}, {where}", fix)
    files = [i for i in infos if not i.is_dir()]
    if len(files) > limits.max_files:
        raise SharingError(zip_path, f"refused: {len(files)} files, more than the limit {limits.max_files}",
                           "raise --max_files if you expect that many")  # fmt: skip
    for info in files:
        if info.file_size > limits.max_file_bytes:
            raise SharingError(
                zip_path,
                f"refused: the entry {info.filename!r} extracts to {info.file_size / MB:.1f} MB, more than the "
                f"per-file limit {limits.max_file_bytes / MB:.0f} MB",
                "raise --max_file_mb if you expect a file that large",
            )
        rel = PurePosixPath(info.filename)
        rel = PurePosixPath(*rel.parts[1:]) if len(rel.parts) > 1 else rel  # inside the package's top folder
        nested = nested_archive_reason(rel.as_posix(), heads.get(info.filename, b""))
        if nested:
            raise SharingError(zip_path, f"refused: the entry {info.filename!r} {nested}", fix)
    total = sum(i.file_size for i in files)
    if total > limits.max_total_bytes:
        raise SharingError(
            zip_path,
            f"refused: extracts to {total / MB:.1f} MB, more than the limit {limits.max_total_bytes / MB:.0f} MB",
            "raise --max_total_mb if you expect a package that large",
        )
    return infos


def _entry_head(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The first 512 bytes of an entry (to recognise archives by content), read without extracting it."""
    with archive.open(info) as f:
        return f.read(512)


def safe_extract(zip_path: str | Path, dest: str | Path, limits: ExtractionLimits | None = None) -> Path:
    """Extract a zip into ``dest`` (which must not exist yet) after checking every entry.

    Args:
        zip_path: the archive.
        dest: the folder to create.
        limits: size and count limits (default :class:`ExtractionLimits`).

    Returns:
        ``dest``.

    Raises:
        SharingError: an unsafe archive (see :func:`check_zip`), an existing ``dest``, or a failed write
            (then nothing is left at ``dest``).
    """
    zip_path, dest = Path(zip_path), Path(dest)
    limits = limits or ExtractionLimits()
    infos = check_zip(zip_path, limits)
    if dest.exists():
        raise SharingError(dest, "already exists", "choose a new folder to extract into")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        root = staging.resolve()
        total = 0
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
                    written = _copy_limited(src, out, limits.max_file_bytes)
                total += written
                if written is None or total > limits.max_total_bytes:
                    raise SharingError(zip_path, f"refused: the entry {info.filename!r} is larger than its header says")
        os.replace(staging, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SharingError(zip_path, f"corrupt zip archive ({exc})", "ask the sender for a new copy") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _copy_limited(src, out, limit: int) -> int | None:
    """Copy at most ``limit`` bytes; None when the source holds more."""
    written = 0
    while chunk := src.read(1024 * 1024):
        written += len(chunk)
        if written > limit:
            return None
        out.write(chunk)
    return written


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
def open_bundle(path: str | Path, limits: ExtractionLimits | None = None) -> Iterator[Path]:
    """Yield the bundle folder of a folder or a zip; a zip is extracted safely into a temporary folder.

    Args:
        path: a bundle folder or ``.zip``.
        limits: what a zip may hold (default :class:`ExtractionLimits`).

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
        extracted = safe_extract(path, Path(tmp) / "bundle", limits)
        yield find_bundle_root(extracted, origin=path)
