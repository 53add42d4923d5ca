"""BudgetCosineLR: cosine annealing that ends with the epoch budget or the time budget, whichever comes first."""

from __future__ import annotations

import math

import pytest
import torch

from medseg.strategies.schedules import BudgetCosineLR

BASE_LR = 1e-3


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)


def _run(scheduler, epoch_seconds, monkeypatch, epochs):
    """Step ``scheduler`` ``epochs`` times with a fake clock advancing ``epoch_seconds`` per epoch; return the lrs."""
    clock = {"now": 1000.0}
    monkeypatch.setattr("medseg.strategies.schedules.time.monotonic", lambda: clock["now"])
    lrs = []
    for _ in range(epochs):
        clock["now"] += epoch_seconds
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    return lrs


def test_without_time_budget_it_is_torch_cosine_annealing():
    ours, theirs = BudgetCosineLR(_optimizer(), max_epochs=10), None
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(_optimizer(), T_max=10)
    for _ in range(10):
        ours.step()
        theirs.step()
        assert ours.get_last_lr()[0] == pytest.approx(theirs.get_last_lr()[0], abs=1e-12)
    assert ours.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)


def test_slow_epochs_anneal_within_the_time_budget(monkeypatch):
    # planned 100 epochs for 100 s, but each epoch takes 4 s: the time budget ends training after 25 epochs (the
    # first epoch, which also pays for start-up, is not timed)
    scheduler = BudgetCosineLR(_optimizer(), max_epochs=100, seconds=100)
    lrs = _run(scheduler, 4.0, monkeypatch, 25)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)  # fully annealed when the budget ends
    expected_half = BASE_LR * (1 + math.cos(math.pi * 0.48)) / 2  # after 12 epochs: 48 s of 100 s
    assert lrs[11] == pytest.approx(expected_half, rel=1e-6)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_fast_epochs_follow_the_epoch_budget(monkeypatch):
    scheduler = BudgetCosineLR(_optimizer(), max_epochs=10, seconds=1000)
    lrs = _run(scheduler, 1.0, monkeypatch, 10)
    assert lrs[4] == pytest.approx(BASE_LR * (1 + math.cos(math.pi * 0.5)) / 2, rel=1e-6)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_resume_restores_progress_and_restarts_the_clock(monkeypatch):
    scheduler = BudgetCosineLR(_optimizer(), max_epochs=100, seconds=100)
    _run(scheduler, 4.0, monkeypatch, 5)
    state = scheduler.state_dict()
    resumed = BudgetCosineLR(_optimizer(), max_epochs=100, seconds=100)
    resumed.load_state_dict(state)
    assert resumed.epoch_seconds == [4.0] * 4 and resumed._last_step is None
    assert resumed.progress() == pytest.approx(scheduler.progress())


def test_bad_epoch_budget_is_one_clear_error():
    with pytest.raises(ValueError, match="max_epochs must be at least 1"):
        BudgetCosineLR(_optimizer(), max_epochs=0)
