"""An interrupted run resumes from its last checkpoint to the same final epoch, into the same MLflow run."""

from __future__ import annotations

import uuid

import pytest
import torch

from medseg.strategies import StrategyError
from medseg.strategies.launch import run_bundle
from tests.medseg.strategies.conftest import history

pytestmark = pytest.mark.slow
# 3 training batches + 1 validation batch per epoch: the 5th forward pass is the first batch of epoch 2
INTERRUPTED = {
    "network_def#_target_": "tests.medseg.tracking.tiny_bundle.RaisingUNet",
    "network_def#fail_on_call": 5,
    "network_def#error": "$KeyboardInterrupt",
}


def _overrides(bundle, out, **more):
    return {"bundle_root": str(bundle), "output_dir": str(out), "max_epochs": 3, **more}


def test_interrupted_run_resumes_to_the_same_final_epoch(unet_bundle, client, tmp_path):
    name = f"resume-{uuid.uuid4().hex[:6]}"
    with pytest.raises(KeyboardInterrupt):
        run_bundle(unet_bundle, ["resume"], _overrides(unet_bundle, tmp_path, run_name=name, **INTERRUPTED))
    checkpoint = torch.load(tmp_path / "resume" / "last.pt", weights_only=False)
    assert checkpoint["medseg"]["epoch"] == 1 and checkpoint["trainer"]["iteration"] == 3
    experiment = client.get_experiment_by_name("tiny_unet/tinyphantoms").experiment_id
    (run,) = client.search_runs([experiment], f"attributes.run_name = '{name}'")
    assert run.info.status == "KILLED"

    # a new run name on the command line: the checkpoint's run is the one continued
    run_bundle(unet_bundle, ["resume"], _overrides(unet_bundle, tmp_path, resume=True, run_name="ignored"))
    final = torch.load(tmp_path / "resume" / "last.pt", weights_only=False)
    assert final["medseg"]["epoch"] == 3 and final["trainer"]["iteration"] == 9
    (run,) = client.search_runs([experiment], f"attributes.run_name = '{name}'")
    assert run.info.status == "FINISHED" and run.data.tags["medseg.resumed_at_epoch"] == "1"
    assert [s for s, _ in history(client, run.info.run_id, "val/mean_dice")] == [1, 2, 3]  # none repeated or skipped
    assert [s for s, _ in history(client, run.info.run_id, "train/loss")] == [1, 2, 3]
    assert not client.search_runs([experiment], "attributes.run_name = 'ignored'")


def test_resume_refuses_a_checkpoint_of_another_network_or_bundle(unet_bundle, flex_bundle, tmp_path):
    run_bundle(unet_bundle, ["resume"], _overrides(unet_bundle, tmp_path, max_epochs=1))
    with pytest.raises(StrategyError, match="checkpoint of another network"):
        run_bundle(
            unet_bundle, ["resume"], _overrides(unet_bundle, tmp_path, resume=True, **{"network_def#channels": [8, 16]})
        )
    with pytest.raises(StrategyError, match="checkpoint of bundle 'tiny_unet', not 'tiny_flex'"):
        run_bundle(
            flex_bundle,
            ["resume"],
            _overrides(flex_bundle, tmp_path / "f", resume=str(tmp_path / "resume" / "last.pt")),
        )
    with pytest.raises(StrategyError, match="no checkpoint to resume from"):
        run_bundle(unet_bundle, ["resume"], _overrides(unet_bundle, tmp_path / "new", resume=True))
