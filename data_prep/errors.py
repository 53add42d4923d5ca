"""Errors that data_prep reports to the user, and the exit codes they map to.

Exit codes follow one rule for every ``python -m data_prep`` command: 2 for bad input (a file or option the user
can fix), 1 for a failure of the run itself (disk full, an unwritable output, an internal error), 130 for Ctrl-C.
"""

from __future__ import annotations

from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


class DataPrepError(Exception):
    """A problem with the user's input that they can fix.

    The message always names the file (or folder, or option) at fault, says what is wrong with it and what to do.

    Args:
        path: the file, folder or option at fault.
        problem: what is wrong with it.
        fix: what the user can do about it.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, path: str | Path | None, problem: str, fix: str = ""):
        self.path = None if path is None else str(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}" + (f" ({fix})" if fix else ""))


class OutputError(DataPrepError):
    """The output could not be written (disk full, read-only or vanished folder): a failure, not bad input.

    ``--skip_bad`` never skips it: the source case is fine, the output is not.
    """

    exit_code = EXIT_FAILURE
