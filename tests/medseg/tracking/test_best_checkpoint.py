"""The checkpoint a training run logs (and `medseg package --run` ships) is the one it keeps as model.pt: the best
epoch's by default, the last epoch's when the bundle keeps its last (``keep_checkpoint: last``)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from ignite.metrics import Metric

from tests.medseg.tracking import tiny_bundle

pytestmark = pytest.mark.slow


class FallingScore(Metric):
    """A key metric that is best at epoch 1 and worse every epoch after: the best epoch is never the last."""

    def __init__(self, *args, **kwargs) -> None:
        self.epochs = 0
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        pass

    def update(self, output) -> None:
        pass

    def compute(self) -> float:
        self.epochs += 1
        return 1.0 / self.epochs


@pytest.mark.parametrize("keep", ["best", "last"])
def test_logged_checkpoint_is_the_kept_one(tmp_path, session_tracking_store, keep):
    best_name, final_name = ("model.pt", "model_final.pt") if keep == "best" else ("model_best.pt", "model.pt")
    data = tiny_bundle.write_dataset(tmp_path / "data").parent
    bundle = tmp_path / "bundles" / tiny_bundle.BUNDLE_NAME
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"name": tiny_bundle.BUNDLE_NAME, "version": "0.1"}))
    config = tiny_bundle.train_config(data, bundle) | tiny_bundle.documented_block("train")
    config["validate"]["evaluator"]["key_val_metric"] = {
        "val_mean_dice": {"_target_": "tests.medseg.tracking.test_best_checkpoint.FallingScore"}
    }
    config["early_stop_patience"] = 10
    config["validate"]["handlers"][-1]["key_metric_filename"] = best_name
    config["train"]["handlers"].append(
        {
            "_target_": "CheckpointSaver",
            "save_dir": "@output_dir",
            "save_dict": {"model": "@network"},
            "save_final": True,
            "final_filename": final_name,
        }
    )
    (bundle / "configs" / "train.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    out.mkdir()
    decision = {"classes": {"1": {"largest_component": True, "fill_holes": False}}}
    (out / "postprocessing.json").write_text(json.dumps(decision))  # what ChoosePostprocessing writes beside it
    tiny_bundle.run_bundle(bundle, max_epochs=3, output_dir=str(out))

    best, final = (torch.load(out / name, weights_only=True) for name in (best_name, final_name))
    assert any(not torch.equal(best[k], final[k]) for k in best), "training changed nothing after epoch 1"
    client = mlflow.MlflowClient(f"sqlite:///{(session_tracking_store / 'mlflow.db').as_posix()}")
    experiment = client.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
    run = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])[0]
    assert run.data.metrics["val/best_mean_dice_epoch"] == 1
    logged = torch.load(
        client.download_artifacts(run.info.run_id, "checkpoints/model.pt", str(tmp_path)), weights_only=True
    )
    kept = best if keep == "best" else final
    assert all(torch.equal(logged[k], kept[k]) for k in kept)
    # `medseg package --run` gets the checkpoint with its post-processing decision beside it
    from medseg.postprocessing import decision_beside
    from medseg.sharing.run_info import resolve_run

    resolved = resolve_run(run.info.run_id, tmp_path / "resolved", client.tracking_uri)
    assert json.loads(Path(decision_beside(resolved.checkpoint)).read_text()) == decision
