"""Errors that data_prep reports to the user."""

from __future__ import annotations

from pathlib import Path


class DataPrepError(Exception):
    """A problem with the user's input that they can fix.

    The message always names the file (or folder) at fault, says what is wrong with it and what to do.

    Args:
        path: the file or folder at fault.
        problem: what is wrong with it.
        fix: what the user can do about it.
    """

    def __init__(self, path: str | Path | None, problem: str, fix: str = ""):
        self.path = None if path is None else str(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}" + (f" ({fix})" if fix else ""))
