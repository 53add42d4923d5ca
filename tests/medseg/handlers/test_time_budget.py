"""TimeBudget: training stops once its wall time is spent, but never before the first epoch (and its validation)."""

from __future__ import annotations

from ignite.engine import Engine, Events

from medseg.handlers import TimeBudget


def _trainer(seconds_per_iteration, monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr("medseg.handlers.time_budget.time.monotonic", lambda: clock["now"])

    def step(engine, batch):
        clock["now"] += seconds_per_iteration

    trainer = Engine(step)
    validated = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: validated.append(e.state.epoch))
    return trainer, validated


def test_stops_after_the_budget_mid_epoch(monkeypatch):
    trainer, validated = _trainer(1.0, monkeypatch)
    TimeBudget(seconds=25).attach(trainer)
    trainer.run(range(10), max_epochs=100)
    assert trainer.state.iteration == 26 and validated == [1, 2]
    assert trainer.state.stop_reason == "time budget"


def test_first_epoch_always_completes(monkeypatch):
    trainer, validated = _trainer(1.0, monkeypatch)
    TimeBudget(seconds=3).attach(trainer)  # shorter than one epoch of 10 iterations
    trainer.run(range(10), max_epochs=100)
    assert validated == [1]  # the first epoch ran to its end (its validation happens there)
    assert trainer.state.iteration == 11


def test_no_budget_is_off(monkeypatch):
    trainer, validated = _trainer(100.0, monkeypatch)
    TimeBudget(seconds=None).attach(trainer)
    trainer.run(range(3), max_epochs=2)
    assert validated == [1, 2]
