"""Two runs with the same seed on CPU give the same metrics and weights; another seed does not."""

from __future__ import annotations

import uuid

import pytest
import torch

from medseg.strategies.launch import run_bundle
from tests.medseg.strategies.conftest import history

pytestmark = pytest.mark.slow


def _run(bundle, client, out, seed):
    name = f"seed-{uuid.uuid4().hex[:6]}"
    run_bundle(bundle, [], {"bundle_root": str(bundle), "output_dir": str(out), "seed": seed, "run_name": name})
    experiment = client.get_experiment_by_name("tiny_unet/tinyphantoms").experiment_id
    (run,) = client.search_runs([experiment], f"attributes.run_name = '{name}'")
    curves = {k: history(client, run.info.run_id, k) for k in ("train/loss", "val/mean_dice", "val/loss")}
    return curves, torch.load(out / "model.pt")


def test_same_seed_same_run(unet_bundle, client, tmp_path):
    first, first_weights = _run(unet_bundle, client, tmp_path / "a", 11)
    second, second_weights = _run(unet_bundle, client, tmp_path / "b", 11)
    other, other_weights = _run(unet_bundle, client, tmp_path / "c", 12)
    assert first == second
    assert all(torch.equal(first_weights[k], second_weights[k]) for k in first_weights)
    assert other["train/loss"] != first["train/loss"]
    assert not all(torch.equal(first_weights[k], other_weights[k]) for k in first_weights)
