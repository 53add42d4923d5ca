"""The one error a bundle run ends with when its input is wrong.

MONAI wraps whatever a transform raises in ``RuntimeError: applying transform ...`` and whatever a config
expression raises in ``RuntimeError: Failed to evaluate ...``, so a plain exception would reach the user as
the last line of a deep traceback naming neither the file nor the fix. :class:`BundleInputError` is a
``SystemExit``: it passes through those ``except Exception`` wrappers untouched and
``python -m monai.bundle run`` ends with exit status 1 and just the message.
"""

from __future__ import annotations

import re

# the error types that mean "the user's input is wrong" (their message names the file and the fix)
_INPUT_ERROR_NAMES = ("InputCheckError", "DatalistError")
# a DataLoader worker re-raises a transform error as text: find our error's line in it
_WORKER_LINE = re.compile(r"^(?:[\w.]+\.)?(?:" + "|".join(_INPUT_ERROR_NAMES) + r"): (.+)$", re.MULTILINE)


class BundleInputError(SystemExit):
    """Bad input to a bundle (datalist, image, label, checkpoint): ends the run with the message only.

    Args:
        message: what is wrong, naming the file and the fix.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


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
