"""The one error a bundle run ends with when its input is wrong.

MONAI wraps whatever a transform raises in ``RuntimeError: applying transform ...`` and whatever a config
expression raises in ``RuntimeError: Failed to evaluate ...``, so a plain exception would reach the user as
the last line of a deep traceback naming neither the file nor the fix. :class:`BundleInputError` is a
``SystemExit``: it passes through those ``except Exception`` wrappers untouched and
``python -m monai.bundle run`` ends with just the message and exit status 2, the one rule of every medseg entry
point (2 bad input, 1 failure, 130 Ctrl-C). :class:`Interrupted` ends a Ctrl-C the same way, with status 130.
"""

from __future__ import annotations

import re
import sys

# the error types that mean "the user's input is wrong" (their message names the file and the fix)
_INPUT_ERROR_NAMES = ("InputCheckError", "DatalistError")
# a DataLoader worker re-raises a transform error as text: find our error's line in it
_WORKER_LINE = re.compile(r"^(?:[\w.]+\.)?(?:" + "|".join(_INPUT_ERROR_NAMES) + r"): (.+)$", re.MULTILINE)


class _ExitWithMessage(SystemExit):
    """A ``SystemExit`` that prints one line and exits with :attr:`exit_status` when it ends the program.

    The interpreter reads ``code`` once, when the exception reaches the top level; a string code would always
    exit with status 1, so ``code`` is the number and reading it writes the message (once) to stderr. Code that
    catches the exception reads :attr:`message` instead.
    """

    exit_status = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self._printed = False

    @property
    def code(self) -> int:  # type: ignore[override]
        if not self._printed:
            self._printed = True
            print(self.message, file=sys.stderr, flush=True)
        return self.exit_status

    def __str__(self) -> str:
        return self.message


class BundleInputError(_ExitWithMessage):
    """Bad input to a bundle (datalist, image, label, checkpoint, override): ends the run with the message only
    and exit status 2.

    Args:
        message: what is wrong, naming the file and the fix.
    """

    exit_status = 2


class Interrupted(_ExitWithMessage, KeyboardInterrupt):
    """Ctrl-C during a bundle run: one line and exit status 130 instead of a 40-frame traceback.

    It is still a ``KeyboardInterrupt``, so handlers that record an interrupted run (MLflow's KILLED status) see it
    as one.

    Args:
        message: what was interrupted and what was kept.
    """

    exit_status = 130


class InputCheckError(ValueError):
    """Raised by medseg's checks inside transforms and handlers; turned into :class:`BundleInputError`
    by :class:`medseg.handlers.InputErrorHandler` (a transform may run in a DataLoader worker, where a
    ``SystemExit`` would kill the worker instead of reporting)."""


def find_input_error(exc: BaseException | None) -> str | None:
    """Return the message of the input error behind ``exc``, or None when it is some other failure.

    Follows ``__cause__``/``__context__`` (MONAI's wrappers) and reads the text a DataLoader worker
    re-raises (where the original exception object is lost).

    Args:
        exc: the exception an engine caught.

    Returns:
        the message of the first :class:`InputCheckError`, ``DatalistError`` or :class:`BundleInputError`
        found, else None.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BundleInputError):
            return exc.message
        if type(exc).__name__ in _INPUT_ERROR_NAMES:
            return str(exc)
        match = _WORKER_LINE.search(str(exc))
        if match:
            return match.group(1)
        exc = exc.__cause__ or exc.__context__
    return None
