"""What a bundle run prints: readable at INFO, everything at DEBUG, one rank under ``torchrun``.

Bundle configs call :func:`configure` first in ``initialize`` and use :func:`debug_enabled` and
:func:`interactive` to switch their console handlers:

- per-iteration loss lines only at DEBUG (``MEDSEG_LOG_LEVEL=DEBUG``, or a ``--logging_file`` whose root is DEBUG);
- a progress bar only on a terminal (a log file gets no carriage-return noise);
- ranks other than 0 log warnings and errors only;
- third-party warnings that say nothing about the run (nvImageCodec's missing GPU decoder) are silenced;
- Ctrl-C anywhere in the run ends with one line and exit status 130 instead of a traceback.

Cheap to import: no torch, MONAI or ignite at import time.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

LEVEL_ENV = "MEDSEG_LOG_LEVEL"
# (logger, level at INFO): third-party loggers whose INFO lines a researcher does not need
QUIET_LOGGERS = {
    "monai.data.nvimgcodec_pydicom_plugin": logging.ERROR,
    "ignite.engine.engine": logging.WARNING,
}
# warning texts (regular expressions) that are harmless in every medseg run
HARMLESS_WARNINGS = (
    r"NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register",
    r"nvImageCodec is not available",
)
INTERRUPTED = "interrupted (Ctrl-C): stopped; outputs written before the interruption are kept as they were"


def rank() -> int:
    """This process's rank under ``torchrun`` (``RANK``), 0 otherwise."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def debug_enabled() -> bool:
    """True when the root logger shows DEBUG lines (per-iteration output wanted)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def interactive() -> bool:
    """True when stderr is a terminal (where a progress bar belongs) and this is rank 0."""
    return rank() == 0 and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def silence_harmless_warnings() -> None:
    """Hide warnings that say nothing about the run (see :data:`HARMLESS_WARNINGS`)."""
    for text in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=text)


def _one_line_interrupt(exc_type, exc, tb, _previous=sys.excepthook) -> None:
    """``sys.excepthook``: a Ctrl-C outside the engines (data caching, start-up) as one line, not a traceback."""
    if issubclass(exc_type, KeyboardInterrupt):
        print(INTERRUPTED, file=sys.stderr, flush=True)
        return  # the interpreter then exits by SIGINT: status 130 in the shell
    _previous(exc_type, exc, tb)


def configure(level: str | int | None = None) -> None:
    """Set up the console of a bundle run; meant for a config's ``initialize``: ``"$medseg.console.configure()"``.

    Args:
        level: root log level; default ``MEDSEG_LOG_LEVEL`` or, when unset, what ``logging.conf`` set. At DEBUG the
            third-party loggers of :data:`QUIET_LOGGERS` speak again.
    """
    level = level if level is not None else os.environ.get(LEVEL_ENV)
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level.upper() if isinstance(level, str) else level)
    verbose = root.isEnabledFor(logging.DEBUG)
    for name, quiet_level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else quiet_level)
    if rank() > 0:  # one console under torchrun: the other ranks report problems only
        root.setLevel(logging.WARNING)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    silence_harmless_warnings()
    sys.excepthook = _one_line_interrupt
