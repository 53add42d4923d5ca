"""One training per output folder: a lock file that a second training into the same ``output_dir`` cannot take.

Two trainings writing one folder overwrite each other's checkpoints, and each would log the other's file as its
own artifact. The lock is an OS file lock (``filelock``), so it is released when its process ends, even when the
process is killed: a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

LOCK_NAME = ".medseg-train.lock"
OWNER_NAME = ".medseg-train.owner"


class OutputDirLock:
    """Hold ``<output_dir>/.medseg-train.lock`` for a training.

    Args:
        output_dir: the run's output folder (created).
        run_name: written beside the lock so a refused training can say who holds it.
    """

    def __init__(self, output_dir: str | Path, run_name: str = "") -> None:
        self.folder = Path(output_dir)
        self.run_name = run_name
        self._lock: Any = None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            medseg.bundle.BundleInputError: another training holds it (one line naming it and the fix).
        """
        from filelock import FileLock, Timeout

        from medseg.bundle.errors import BundleInputError

        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.folder / LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            owner = self._owner()
            raise BundleInputError(
                f"{self.folder}: another training is writing here ({owner}); wait for it to end, or give this "
                "run its own folder (--output_dir DIR or --run_name NAME)"
            ) from None
        self._lock = lock
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "run_name": self.run_name,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        try:
            (self.folder / OWNER_NAME).write_text(json.dumps(owner))
        except OSError:
            pass

    def _owner(self) -> str:
        try:
            owner = json.loads((self.folder / OWNER_NAME).read_text())
            run = owner.get("run_name") or "?"
            return f"run {run}, pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('since')}"
        except (OSError, ValueError):
            return "owner unknown"

    def release(self) -> None:
        if self._lock is not None:
            try:
                (self.folder / OWNER_NAME).unlink(missing_ok=True)
            except OSError:
                pass
            self._lock.release()
            self._lock = None
