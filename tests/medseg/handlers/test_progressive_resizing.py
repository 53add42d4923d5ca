"""``medseg.handlers.ProgressiveResizing``: the early stages of a run train on smaller copies of each batch."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from medseg.bundle.errors import BundleInputError
from medseg.handlers import ProgressiveResizing


def _batches(n: int, size: int = 64) -> list[dict]:
    label = torch.zeros(2, 1, size, size, dtype=torch.uint8)
    label[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return [{"image": torch.rand(2, 3, size, size), "label": label.clone(), "case_id": ["a", "b"]} for _ in range(n)]


def _record_step_inputs(handler: ProgressiveResizing, epochs: int, batches: list[dict]) -> list[dict]:
    """Run an engine whose step records what it was given, with ``handler`` attached; one record per step."""
    seen = []
    trainer = Engine(lambda engine, batch: seen.append(
        {"epoch": engine.state.epoch, "image": batch["image"], "label": batch["label"], "case_id": batch["case_id"]}))
    handler.attach(trainer)
    trainer.run(batches, max_epochs=epochs)
    return seen


def test_stages_follow_the_epochs_and_resize_image_and_label():
    handler = ProgressiveResizing([64, 64], scales=[0.5, 0.75, 1.0], max_epochs=6, divisor=16)
    seen = _record_step_inputs(handler, 6, _batches(2))
    sizes = {step["epoch"]: tuple(step["image"].shape[-2:]) for step in seen}
    # thirds of 6 epochs; 0.75 * 64 = 48 is a multiple of 16, 0.5 * 64 = 32 too
    assert sizes == {1: (32, 32), 2: (32, 32), 3: (48, 48), 4: (48, 48), 5: (64, 64), 6: (64, 64)}
    small = seen[0]
    assert small["label"].shape == (2, 1, 32, 32) and small["label"].dtype == torch.uint8
    assert set(small["label"].unique().tolist()) == {0, 1}  # nearest neighbour: still a label map
    assert small["label"].float().mean() == pytest.approx(0.25)  # the square keeps its share of the image
    assert small["image"].dtype == torch.float32 and small["case_id"] == ["a", "b"]
    assert 0.0 <= float(small["image"].min()) and float(small["image"].max()) <= 1.0  # anti-aliased, no overshoot


def test_the_last_stage_passes_batches_through_unchanged():
    handler = ProgressiveResizing([64, 64], scales=[0.5, 1.0], max_epochs=2)
    batches = _batches(1)
    seen = _record_step_inputs(handler, 2, batches)
    assert seen[-1]["image"] is batches[0]["image"] and seen[-1]["label"] is batches[0]["label"]


def test_sizes_are_rounded_to_the_network_divisor():
    handler = ProgressiveResizing([224, 192], scales=[0.5, 0.75, 1.0], max_epochs=3, divisor=32)
    assert handler.sizes == [(128, 96), (160, 128), (224, 192)]  # 144 / 32 = 4.5 rounds to even


def test_the_clock_moves_the_stages_when_the_budget_is_time(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("medseg.handlers.progressive_resizing.time.monotonic", lambda: clock[0])
    handler = ProgressiveResizing([64, 64], scales=[0.5, 1.0], shares=[0.25, 0.75], max_epochs=1000, seconds=100.0)
    trainer = Engine(lambda engine, batch: clock.__setitem__(0, clock[0] + 10.0))  # each step takes 10 s
    sizes = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda engine: sizes.append(handler.size[0]))
    handler.attach(trainer)
    trainer.run(_batches(1), max_epochs=6)
    # 25% of 100 s: epochs 1-3 start at 0, 10 and 20 s; epoch 4 starts at 30 s, in the full-size stage
    assert sizes == [32, 32, 32, 64, 64, 64]


def test_off_attaches_nothing():
    handler = ProgressiveResizing([64, 64], scales=None)
    batches = _batches(1)
    seen = _record_step_inputs(handler, 1, batches)
    assert seen[0]["image"] is batches[0]["image"]


@pytest.mark.parametrize(("kwargs", "start"), [
    ({"scales": [1.0]}, "--progressive_scales [1.0]: give two or more scales"),
    ({"scales": "0.5 1.0"}, "--progressive_scales '0.5 1.0': give two or more scales"),
    ({"scales": [0.5, "1"]}, "--progressive_scales [0.5, '1']: every scale must be a number"),
    ({"scales": [0.5, 0.9]}, "--progressive_scales [0.5, 0.9]: scales must rise from above 0 and end at 1.0"),
    ({"scales": [0.75, 0.5, 1.0]}, "--progressive_scales [0.75, 0.5, 1.0]: scales must rise"),
    ({"scales": [0.0, 1.0]}, "--progressive_scales [0.0, 1.0]: scales must rise"),
    ({"scales": [0.5, 1.0], "shares": [0.5]}, "--progressive_shares [0.5]: give one positive share"),
    ({"scales": [0.5, 1.0], "shares": [0.7, 0.7]}, "--progressive_shares [0.7, 0.7]: give one positive share"),
    ({"scales": [0.5, 1.0], "shares": [1.0, 0.0]}, "--progressive_shares [1.0, 0.0]: give one positive share"),
])
def test_bad_settings_are_refused_in_one_line(kwargs, start):
    with pytest.raises(BundleInputError) as raised:
        ProgressiveResizing([64, 64], **kwargs)
    assert str(raised.value).startswith(start) and "\n" not in str(raised.value)
