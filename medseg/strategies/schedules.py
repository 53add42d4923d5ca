"""Learning-rate schedules as override files: one handler steps the bundle's ``lr_scheduler`` per iteration or
per epoch, replacing the bundle's own ``LrScheduleHandler``.

The override files (``bundles/strategies/onecycle.json``, ``cosine_epoch.json``, ``step_drop.json``) replace the
``lr_scheduler`` id with a torch scheduler and append :class:`ScheduleHandler` to ``train#handlers``. The bundle's
own ``LrScheduleHandler`` then refers to the new scheduler too and would step it a second time (once per epoch),
so this handler detaches every other ``LrScheduleHandler`` of the trainer when it is attached. A bundle without any
scheduler works the same way.

The learning rate of every iteration is logged to the bundle's MLflow run as ``train/lr_step`` (step = iteration),
beside the ``train/lr`` per epoch that :class:`medseg.handlers.tracking.MLflowTracking` records.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from monai.handlers import LrScheduleHandler
from torch.optim.lr_scheduler import LRScheduler

from medseg.handlers.engine_handlers import attached_handlers
from medseg.handlers.engine_handlers import handler_owner as _owner

logger = logging.getLogger(__name__)
STEP_METRIC = "train/lr_step"


class ScheduleHandler(LrScheduleHandler):
    """MONAI's ``LrScheduleHandler`` that takes over scheduling from the trainer's other ``LrScheduleHandler``\\ s
    and logs the learning rate of every iteration to MLflow.

    Args:
        lr_scheduler: the torch scheduler (the config's ``@lr_scheduler``).
        epoch_level: step once per epoch (``MultiStepLR``) rather than per iteration (``OneCycleLR``, cosine).
        log_steps: log ``lr_step`` to the MLflow run of the trainer's MLflow handler, if it has one.
        kwargs: passed on to ``LrScheduleHandler``.
    """

    def __init__(self, lr_scheduler: Any, epoch_level: bool = False, log_steps: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("print_lr", False)
        super().__init__(lr_scheduler, epoch_level=epoch_level, **kwargs)
        self.log_steps = log_steps
        self.pending: list[tuple[int, float]] = []

    def attach(self, engine: Any) -> None:
        """Detach the trainer's other ``LrScheduleHandler``\\ s, then step ``lr_scheduler`` on this engine."""
        from ignite.engine import Events

        for event, entries in list(engine._event_handlers.items()):
            for func, *_ in list(entries):
                owner = _owner(func)
                if isinstance(owner, LrScheduleHandler) and owner is not self:
                    engine.remove_event_handler(func, event)
                    logger.info("%s replaces the bundle's LrScheduleHandler", type(self.lr_scheduler).__name__)
        super().attach(engine)
        if self.log_steps:
            engine.add_event_handler(Events.ITERATION_STARTED, self._record)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._flush)
            engine.add_event_handler(Events.COMPLETED, self._flush)

    def _record(self, engine: Any) -> None:
        optimizer = self.lr_scheduler.optimizer
        self.pending.append((engine.state.iteration, float(optimizer.param_groups[-1]["lr"])))

    def _flush(self, engine: Any) -> None:
        """Send the recorded learning rates to the run of the trainer's MLflow tracking handler."""
        from medseg.handlers.tracking import MLflowTracking

        pending, self.pending = self.pending, []
        handlers = [h for h in attached_handlers(engine) if isinstance(h, MLflowTracking) and h.recorder is not None]
        if not pending or not handlers:
            return
        try:
            handlers[0].recorder.log_series(STEP_METRIC, pending)
        except Exception as error:  # tracking never stops training
            logger.warning("MLflow: %s not logged (%s)", STEP_METRIC, error)


class BudgetCosineLR(LRScheduler):
    """Cosine annealing that ends when the training budget ends: after ``max_epochs`` epochs or ``seconds`` of wall
    time, whichever comes first.

    ``medseg plan`` sizes ``max_epochs`` from a few timed steps, but a real epoch also pays for data loading,
    validation and the machine's other jobs, so a schedule over ``max_epochs`` alone is cut off half-annealed when
    the time budget stops training. Stepped once per epoch, this scheduler measures the mean epoch time so far and
    takes progress as ``max(epochs / max_epochs, epochs * mean epoch seconds / seconds)``; the learning rate follows
    ``eta_min + (base - eta_min) * (1 + cos(pi * progress)) / 2`` and reaches ``eta_min`` at the budget's end.
    Without ``seconds`` it is ``CosineAnnealingLR(T_max=max_epochs)``.

    Args:
        optimizer: the wrapped optimiser.
        max_epochs: the planned number of epochs.
        seconds: the wall-time budget of the training run; None or 0 for none.
        eta_min: the final learning rate.
        last_epoch: as in torch's schedulers (-1 to start).
    """

    def __init__(self, optimizer: Any, max_epochs: int, seconds: float | None = None, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        if int(max_epochs) < 1:
            raise ValueError(f"BudgetCosineLR: max_epochs must be at least 1, got {max_epochs}")
        self.max_epochs = int(max_epochs)
        self.seconds = float(seconds) if seconds else None
        self.eta_min = float(eta_min)
        self.epoch_seconds: list[float] = []
        self._last_step: float | None = None
        super().__init__(optimizer, last_epoch)

    def progress(self) -> float:
        """The fraction of the budget spent after ``last_epoch`` epochs, in [0, 1]."""
        done = max(self.last_epoch, 0)
        fraction = done / self.max_epochs
        if self.seconds and self.epoch_seconds:
            mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
            fraction = max(fraction, done * mean / self.seconds)
        return min(fraction, 1.0)

    def step(self, epoch: int | None = None) -> None:  # noqa: D102 - torch's step, timing each epoch
        now = time.monotonic()
        if self._last_step is not None and self.last_epoch >= 1:  # epoch 1 also paid for start-up
            self.epoch_seconds.append(now - self._last_step)
        self._last_step = now
        super().step(epoch)

    def get_lr(self) -> list[float]:  # noqa: D102 - torch's hook
        scale = (1 + math.cos(math.pi * self.progress())) / 2
        return [self.eta_min + (base - self.eta_min) * scale for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Torch's, with the epoch clock restarted: a resumed run's first epoch is timed from its own start."""
        super().load_state_dict(state_dict)
        self._last_step = None
