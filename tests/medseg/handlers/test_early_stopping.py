"""SmoothedScore: early stopping follows the trend of the validation metric, not one noisy epoch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ignite.engine import Engine, Events
from monai.handlers import EarlyStopHandler

from medseg.handlers import SmoothedScore


def _engine(metrics):
    return SimpleNamespace(state=SimpleNamespace(metrics=metrics))


def test_exponential_average_of_a_loss_negated():
    score = SmoothedScore("val_loss", smoothing=0.5)
    assert score(_engine({"val_loss": 1.0})) == pytest.approx(-1.0)
    assert score(_engine({"val_loss": 0.0})) == pytest.approx(-0.5)
    assert score(_engine({"val_loss": 0.0})) == pytest.approx(-0.25)


def test_higher_is_better_keeps_the_sign_and_zero_smoothing_is_the_raw_value():
    score = SmoothedScore("val_mean_dice", smoothing=0.0, higher_is_better=True)
    assert [score(_engine({"val_mean_dice": v})) for v in (0.2, 0.9, 0.1)] == pytest.approx([0.2, 0.9, 0.1])


def test_one_lucky_epoch_does_not_reset_patience():
    """Every third epoch a lucky spike just above the last one while the trend falls: raw scoring restarts its patience
    at each spike and never stops; the smoothed score sees the decline and stops."""
    dice = [0.60, 0.50, 0.45, 0.61, 0.40, 0.35, 0.62, 0.30, 0.25, 0.63, 0.20, 0.15]

    def stopped_at(score_function):
        trainer = Engine(lambda e, b: None)
        evaluator = Engine(lambda e, b: None)
        evaluator.add_event_handler(Events.EPOCH_STARTED, lambda e: e.state.metrics.update(
            val_mean_dice=dice[trainer.state.epoch - 1]))
        EarlyStopHandler(patience=3, score_function=score_function, trainer=trainer).attach(evaluator)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda t: evaluator.run([0]))
        trainer.run([0], max_epochs=len(dice))
        return trainer.state.epoch

    raw = stopped_at(lambda e: e.state.metrics["val_mean_dice"])
    smoothed = stopped_at(SmoothedScore("val_mean_dice", smoothing=0.6, higher_is_better=True))
    assert raw == len(dice)
    assert smoothed == 4


def test_missing_metric_and_bad_smoothing_are_one_clear_error():
    with pytest.raises(KeyError, match="'val_mean_iou' not computed; have \\['val_loss'\\]"):
        SmoothedScore("val_mean_iou")(_engine({"val_loss": 1.0}))
    with pytest.raises(ValueError, match="smoothing must be in"):
        SmoothedScore(smoothing=1.0)
