"""``medseg.handlers.WeightAverage``: the exponential moving average of the trained weights, and its switch."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from medseg.bundle.errors import BundleInputError
from medseg.handlers import WeightAverage


def _trainer_setting_weights(network: torch.nn.Linear) -> Engine:
    """An engine whose iteration sets every weight of ``network`` to its batch (a number; a stand-in for a step)."""

    def step(engine, batch):
        with torch.no_grad():
            network.weight.fill_(batch)
            network.bias.fill_(batch)

    return Engine(step)


def test_average_follows_the_momentum_after_each_iteration():
    network = torch.nn.Linear(2, 1)
    with torch.no_grad():
        network.weight.fill_(0.0)
        network.bias.fill_(0.0)
    average = WeightAverage(network, momentum=0.25, warmup_iters=0)
    values = [4.0, 8.0, -4.0]
    trainer = _trainer_setting_weights(network)
    average.attach(trainer)
    trainer.run(values, max_epochs=1)

    expected = 0.0
    for value in values:
        expected = 0.75 * expected + 0.25 * value
    assert average.network is not network
    assert torch.allclose(average.network.weight, torch.full_like(network.weight, expected))
    assert torch.allclose(average.network.bias, torch.full_like(network.bias, expected))
    assert torch.equal(network.weight, torch.full_like(network.weight, -4.0))  # the trained network is untouched
    assert trainer.state.ema_momentum == pytest.approx(0.25)


def test_warmup_starts_with_a_larger_momentum():
    network = torch.nn.Linear(2, 1)
    average = WeightAverage(network, momentum=0.01, warmup_iters=10, warmup_momentum=0.5)
    trainer = _trainer_setting_weights(network)
    average.attach(trainer)
    seen = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.ema_momentum))
    trainer.run([1.0] * 12, max_epochs=1)
    assert seen[0] == pytest.approx(0.5)
    assert seen[-1] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(seen, seen[1:], strict=False))


def test_batch_norm_statistics_are_averaged_too():
    network = torch.nn.BatchNorm1d(3)
    average = WeightAverage(network, momentum=0.5, warmup_iters=0)

    def step(engine, batch):
        network.train()
        network(batch)

    trainer = Engine(step)
    average.attach(trainer)
    trainer.run([torch.randn(8, 3) + 10.0], max_epochs=1)
    # one update with momentum 0.5: halfway between the initial mean (0) and the network's running mean
    assert torch.allclose(average.network.running_mean, network.running_mean / 2)
    assert not average.network.training  # evaluated as it is saved


def test_off_is_the_trained_network_and_attaches_nothing():
    network = torch.nn.Linear(2, 1)
    average = WeightAverage(network, momentum=None)
    trainer = Engine(lambda engine, batch: None)
    average.attach(trainer)
    assert average.network is network
    trainer.run([0], max_epochs=1)
    assert not hasattr(trainer.state, "ema_momentum")


@pytest.mark.parametrize(("kwargs", "start"), [
    ({"momentum": 0.0}, "--weight_average_momentum 0.0: must be a number between 0 and 1"),
    ({"momentum": 1.0}, "--weight_average_momentum 1.0: must be"),
    ({"momentum": "0.1"}, "--weight_average_momentum '0.1': must be"),
    ({"momentum": True}, "--weight_average_momentum True: must be"),
    ({"momentum": 0.1, "warmup_momentum": 2.0}, "--weight_average#warmup_momentum 2.0: must be"),
    ({"momentum": 0.1, "warmup_iters": -1}, "--weight_average#warmup_iters -1: must be a whole number"),
    ({"momentum": 0.1, "warmup_iters": 2.5}, "--weight_average#warmup_iters 2.5: must be"),
])
def test_bad_settings_are_refused_in_one_line(kwargs, start):
    with pytest.raises(BundleInputError) as raised:
        WeightAverage(torch.nn.Linear(2, 1), **kwargs)
    assert str(raised.value).startswith(start) and "\n" not in str(raised.value)
