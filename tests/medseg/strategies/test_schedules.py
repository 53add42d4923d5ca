"""Each schedule override file gives the learning-rate curve torch's scheduler defines, as logged in MLflow."""

from __future__ import annotations

import uuid

import pytest
import torch

from medseg.strategies.launch import run_bundle
from tests.medseg.strategies.conftest import history

pytestmark = pytest.mark.slow
BASE_LR, STEPS_PER_EPOCH = 0.01, 3  # the test bed: lr 0.01, 6 training items in batches of 2


def _run(bundle, client, tmp_path, strategy, **overrides):
    name = f"schedule-{strategy}-{uuid.uuid4().hex[:6]}"
    overrides = {"bundle_root": str(bundle), "output_dir": str(tmp_path), "run_name": name, **overrides}
    run_bundle(bundle, [strategy], overrides)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("tiny_unet/tinyphantoms").experiment_id], f"attributes.run_name = '{name}'"
    )
    return run


def _expected(make_scheduler, steps):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LR)
    scheduler, lrs = make_scheduler(optimizer), []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_onecycle(unet_bundle, client, tmp_path):
    run = _run(unet_bundle, client, tmp_path, "onecycle", max_epochs=2)
    expected = _expected(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, BASE_LR, epochs=2, steps_per_epoch=STEPS_PER_EPOCH), 6
    )
    logged = history(client, run.info.run_id, "train/lr_step")
    assert [s for s, _ in logged] == list(range(1, 7))
    assert [v for _, v in logged] == pytest.approx(expected)
    assert max(v for _, v in logged) > 2 * logged[0][1]  # it rises, then anneals
    assert run.data.params["lr_scheduler"] == "OneCycleLR"


def test_cosine_cycle_of_one_epoch(unet_bundle, client, tmp_path):
    run = _run(unet_bundle, client, tmp_path, "cosine_epoch", max_epochs=2)
    expected = _expected(lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=STEPS_PER_EPOCH), 6)
    logged = [v for _, v in history(client, run.info.run_id, "train/lr_step")]
    assert logged == pytest.approx(expected)
    assert logged[0] == logged[STEPS_PER_EPOCH] == pytest.approx(BASE_LR)  # restarts every epoch
    assert logged[1] < BASE_LR


def test_step_drop(unet_bundle, client, tmp_path):
    run = _run(unet_bundle, client, tmp_path, "step_drop", max_epochs=3, lr_drop_epoch=2, lr_drop_factor=0.1)
    # the bundle's own StepLR (halving every epoch) is replaced: only the drop after epoch 2 remains
    logged = history(client, run.info.run_id, "train/lr")
    assert [s for s, _ in logged] == [1, 2, 3]
    assert [v for _, v in logged] == pytest.approx([0.01, 0.01, 0.001])
