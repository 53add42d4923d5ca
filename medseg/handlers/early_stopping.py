"""A smoothed validation score for early stopping, so that one noisy epoch neither stops nor saves a run."""

from __future__ import annotations

from typing import Any


class SmoothedScore:
    """``EarlyStopHandler``'s ``score_function``: an exponential moving average of one validation metric.

    On a hundred images the validation metric jumps by several points between epochs; patience counted on the raw
    value restarts at every lucky epoch and stops on unlucky streaks. The average of
    ``smoothing * previous + (1 - smoothing) * current`` follows the trend instead (``smoothing=0`` is the raw value).

    Args:
        metric: the key in the evaluator's ``engine.state.metrics`` (``val_loss``, ``val_mean_dice``, ...).
        smoothing: the weight of the past, in [0, 1).
        higher_is_better: False for losses: the score is then the negated average, as the handler maximises it.
    """

    def __init__(self, metric: str = "val_loss", smoothing: float = 0.6, higher_is_better: bool = False) -> None:
        if not 0.0 <= float(smoothing) < 1.0:
            raise ValueError(f"SmoothedScore: smoothing must be in [0, 1), got {smoothing}")
        self.metric = metric
        self.smoothing = float(smoothing)
        self.sign = 1.0 if higher_is_better else -1.0
        self.average: float | None = None

    def __call__(self, engine: Any) -> float:
        """The smoothed score after this validation epoch."""
        metrics = engine.state.metrics
        if self.metric not in metrics:
            raise KeyError(f"SmoothedScore: validation metric {self.metric!r} not computed; have {sorted(metrics)}")
        value = float(metrics[self.metric])
        self.average = value if self.average is None else self.smoothing * self.average + (1 - self.smoothing) * value
        return self.sign * self.average
