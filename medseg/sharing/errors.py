"""The one error type of :mod:`medseg.sharing`: a message that names the file, the problem and the fix."""

from __future__ import annotations

from pathlib import Path


class SharingError(ValueError):
    """A bundle, archive, input or output folder that cannot be used as given.

    Args:
        path: the file or folder at fault.
        problem: what is wrong with it.
        fix: what the user can do about it (optional).
    """

    def __init__(self, path: str | Path, problem: str, fix: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}" + (f"; {fix}" if fix else ""))
