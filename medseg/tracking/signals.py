"""SIGTERM (SLURM time limits, ``docker stop``, ``kill``) ends a training cleanly instead of leaving a RUNNING run.

The first SIGTERM asks the trainer to stop after the current iteration (``engine.terminate()``): no checkpoint is
cut half-way (MONAI's ``CheckpointSaver`` and medseg's resume checkpoint write atomically), the run is recorded as
KILLED with ``medseg.stop_reason=sigterm``, and the process then exits with status 143 (128 + SIGTERM), as a
terminated program should. A second SIGTERM stops at once (:class:`Terminated` is raised where the program is).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)
EXIT_STATUS = 128 + signal.SIGTERM


class Terminated(BaseException):  # noqa: N818 (like KeyboardInterrupt: not an error of the program)
    """A second SIGTERM: stop now."""


class SigtermGuard:
    """Install a SIGTERM handler (main thread only) for the life of a training.

    Args:
        on_first: called on the first SIGTERM (e.g. ``lambda: trainer.terminate()``).
    """

    def __init__(self, on_first: Callable[[], Any]) -> None:
        self.on_first = on_first
        self.received = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set in the main thread; the run then ends as before
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        self._installed = True

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received:
            raise Terminated("SIGTERM received twice")
        self.received = True
        logger.warning("SIGTERM: stopping after the current iteration (send it again to stop at once)")
        self.on_first()

    def restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False
