"""Stop training when its wall-time budget is spent, after the iteration in progress."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ignite.engine import Engine

logger = logging.getLogger(__name__)


class TimeBudget:
    """Terminate the trainer once ``seconds`` of wall time have passed since it started.

    ``medseg plan`` sizes ``max_epochs`` to fit the budget from timed steps; this handler makes the budget hold
    when the machine turns out slower (another job, thermal limits). The run ends as a normal run does: the final
    checkpoint is saved and the best one stays the best validated epoch. The first epoch always completes, so that
    a run has at least one validated checkpoint (``model.pt``) whatever the budget.

    Args:
        seconds: the budget; None or 0 turns the handler off.
    """

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = float(seconds) if seconds else None
        self.started: float | None = None

    def attach(self, engine: Engine) -> None:
        """Register on ``engine``: start the clock when it starts, check it after every iteration."""
        from ignite.engine import Events

        if self.seconds is None:
            return
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._check)

    def _start(self, engine: Engine) -> None:
        self.started = time.monotonic()

    def _check(self, engine: Engine) -> None:
        if engine.state.epoch <= 1:
            return  # still in the first epoch: no validated checkpoint exists yet (terminating skips validation)
        if self.started is not None and time.monotonic() - self.started > self.seconds:
            logger.info(
                "time budget of %.0fs spent at epoch %d, iteration %d: training stops",
                self.seconds, engine.state.epoch, engine.state.iteration,
            )
            engine.state.stop_reason = "time budget"
            engine.terminate()
