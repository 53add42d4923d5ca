"""The output folder's safety rules: never write into the source, never delete what data_prep did not write.

* ``--out`` may not be ``--src``, lie inside it or contain it (compared after resolving symlinks).
* Every output carries ``data_prep_manifest.json``: the files this run wrote. Replacing an earlier output is
  allowed only when every file in it is listed there (or is the manifest itself); otherwise the run is refused
  and the foreign files are named, before any work starts and again just before the swap.
* The output is built in a staging folder ``.<out>.partial-<pid>`` beside ``--out`` holding ``.owner.json``
  (pid, process start time, boot id). A later run removes staging folders whose owner process is gone (a
  ``kill -9``, a power cut) and leaves those of a run still going.
* The new output replaces the old one with one atomic exchange of the two folders (``renameat2`` with
  ``RENAME_EXCHANGE`` on Linux; two renames elsewhere), so ``--out`` is always a complete output.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import socket
from pathlib import Path

from data_prep.errors import DataPrepError, OutputError

MANIFEST_NAME = "data_prep_manifest.json"
OWNER_NAME = ".owner.json"
STAGING_TAG = ".partial-"
OLD_TAG = ".old-"
NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}


def resolve(path: Path, option: str) -> Path:
    """``path`` with symlinks resolved; a symlink loop is a one-line error naming ``option``."""
    try:
        return Path(os.path.realpath(path, strict=False))
    except (OSError, RuntimeError) as exc:
        raise DataPrepError(path, f"{option} cannot be resolved ({exc})", "remove the symlink loop") from exc


def check_src_out(src: Path, out: Path) -> None:
    """Refuse an ``out`` equal to, inside or containing ``src`` (both resolved through symlinks).

    Raises:
        DataPrepError: the two overlap.
    """
    real_src, real_out = resolve(src, "--src"), resolve(out, "--out")
    if real_out == real_src:
        problem = "is the --src folder"
    elif real_out.is_relative_to(real_src):
        problem = f"lies inside --src ({real_src})"
    elif real_src.is_relative_to(real_out):
        problem = f"contains --src ({real_src}); replacing it would delete the source"
    else:
        return
    raise DataPrepError(out, f"--out {problem}", "choose an --out folder outside the source dataset")


def _files_under(folder: Path) -> list[str]:
    """Paths (relative, POSIX) of every non-directory entry under ``folder``; symlinks are not followed."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        rel_root = Path(root).relative_to(folder)
        found += [(rel_root / name).as_posix() for name in files]
        # a symlink to a folder is listed by os.walk among dirs but not entered: it is a file to us
        found += [(rel_root / name).as_posix() for name in dirs if os.path.islink(os.path.join(root, name))]
    return sorted(found)


def write_manifest(folder: Path) -> None:
    """List every file under ``folder`` in its manifest (the manifest lists itself too)."""
    files = sorted({*_files_under(folder), MANIFEST_NAME} - {OWNER_NAME})
    (folder / MANIFEST_NAME).write_text(json.dumps({"written_by": "data_prep", "files": files}, indent=1) + "\n")


def foreign_files(out: Path) -> list[str]:
    """Files in an existing output that data_prep did not write (all of them when there is no manifest)."""
    present = _files_under(out)
    try:
        listed = set(json.loads((out / MANIFEST_NAME).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        listed = set()
    return [f for f in present if f not in listed]


def check_replaceable(out: Path) -> None:
    """Refuse an existing ``out`` that is not a folder, or that holds files data_prep did not write.

    Raises:
        DataPrepError: ``out`` is a file, or holds files that no data_prep manifest lists (they are named).
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise DataPrepError(out, "--out exists and is not a folder", "choose a new --out folder")
    foreign = foreign_files(out)
    if not foreign:
        return
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    if not (out / MANIFEST_NAME).is_file():
        problem = f"--out exists and is not a data_prep output (no {MANIFEST_NAME}; it holds {shown})"
    else:
        problem = f"--out holds files that data_prep did not write: {shown}"
    raise DataPrepError(out, problem, "move them away or choose another --out; data_prep only replaces its own files")


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def owner_record() -> dict:
    """What identifies this process across pid reuse: pid, start time, boot id and host."""
    pid = os.getpid()
    return {"pid": pid, "start": _process_start(pid), "boot_id": _boot_id(), "host": socket.gethostname()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_alive(folder: Path) -> bool:
    """Whether the process that made a staging folder is still running (when in doubt: yes)."""
    try:
        owner = json.loads((folder / OWNER_NAME).read_text())
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        owner = None
        try:
            pid = int(folder.name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            return True  # not named by us: leave it
    if owner is not None:
        if owner.get("host") not in (None, socket.gethostname()):
            return True  # a run on another machine sharing this folder: cannot tell
        if owner.get("boot_id") and _boot_id() and owner["boot_id"] != _boot_id():
            return False  # the machine rebooted since
        if owner.get("start") and _process_start(pid) is not None:
            return _process_start(pid) == owner["start"]
    return _pid_alive(pid)


def clean_stale(out: Path) -> list[Path]:
    """Remove staging folders of ``out`` left by runs that were killed; returns those removed.

    A folder ``.<out>.old-*`` that a killed run had moved aside is put back when ``out`` itself is missing.
    """
    removed = []
    if not out.parent.is_dir():
        return removed
    for entry in sorted(out.parent.iterdir()):
        name = entry.name
        if not name.startswith(f".{out.name}.") or not entry.is_dir() or entry.is_symlink():
            continue
        tag = name[len(out.name) + 1:]
        if not (tag.startswith(STAGING_TAG) or tag.startswith(OLD_TAG)) or owner_alive(entry):
            continue
        if tag.startswith(OLD_TAG) and not out.exists():
            os.replace(entry, out)  # the swap was cut between its two renames: restore the old output
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def make_staging(out: Path) -> Path:
    """Create this run's staging folder beside ``out`` with its owner record.

    Raises:
        OutputError: the folder holding ``out`` cannot be written.
    """
    staging = out.parent / f".{out.name}{STAGING_TAG}{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        (staging / OWNER_NAME).write_text(json.dumps(owner_record()) + "\n")
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise output_error(exc, out) from exc
    return staging


def output_error(exc: OSError, out: Path) -> OutputError:
    """One line for an OSError met while writing the output: disk full, read-only, or other."""
    if exc.errno in NO_SPACE:
        return OutputError(out, "no space left on the device of --out", "free space there or choose another --out")
    if exc.errno in READ_ONLY:
        where = out if out.exists() else out.parent
        return OutputError(where, f"cannot write the output here ({exc.strerror})", "choose a writable --out folder")
    return OutputError(out, f"writing the output failed ({exc.strerror or exc})", "check the --out folder")


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically with Linux ``renameat2(RENAME_EXCHANGE)``; False where that is unavailable."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd = -100
    result = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            return False
        raise OSError(err, os.strerror(err), str(a))
    return True


def swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging``; the old output (only data_prep's files, checked again now) is removed.

    Raises:
        DataPrepError: files that data_prep did not write appeared in ``out`` during the run.
        OutputError: the folders could not be renamed.
    """
    check_replaceable(out)
    (staging / OWNER_NAME).unlink(missing_ok=True)
    try:
        if not out.exists():
            os.rename(staging, out)
            return
        if _exchange(staging, out):
            shutil.rmtree(staging, ignore_errors=True)  # now the old output
            return
        old = out.parent / f".{out.name}{OLD_TAG}{os.getpid()}"
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise output_error(exc, out) from exc
