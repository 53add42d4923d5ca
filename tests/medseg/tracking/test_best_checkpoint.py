"""The checkpoint a training run logs (and `medseg package --run` ships) is the best epoch's, not the last one's."""

from __future__ import annotations

import json

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


def test_logged_checkpoint_is_the_best_epochs(tmp_path, session_tracking_store):
    data = tiny_bundle.write_dataset(tmp_path / "data").parent
    bundle = tmp_path / "bundles" / tiny_bundle.BUNDLE_NAME
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"name": tiny_bundle.BUNDLE_NAME, "version": "0.1"}))
    config = tiny_bundle.train_config(data, bundle) | tiny_bundle.documented_block("train")
    config["validate"]["evaluator"]["key_val_metric"] = {
        "val_mean_dice": {"_target_": "tests.medseg.tracking.test_best_checkpoint.FallingScore"}
    }
    config["early_stop_patience"] = 10
    config["train"]["handlers"].append(
        {
            "_target_": "CheckpointSaver",
            "save_dir": "@output_dir",
            "save_dict": {"model": "@network"},
            "save_final": True,
            "final_filename": "model_final.pt",
        }
    )
    (bundle / "configs" / "train.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    tiny_bundle.run_bundle(bundle, max_epochs=3, output_dir=str(out))

    best, final = torch.load(out / "model.pt", weights_only=True), torch.load(out / "model_final.pt", weights_only=True)
    assert any(not torch.equal(best[k], final[k]) for k in best), "training changed nothing after epoch 1"
    client = mlflow.MlflowClient(f"sqlite:///{(session_tracking_store / 'mlflow.db').as_posix()}")
    experiment = client.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
    run = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])[0]
    assert run.data.metrics["val/best_mean_dice_epoch"] == 1
    logged = torch.load(
        client.download_artifacts(run.info.run_id, "checkpoints/model.pt", str(tmp_path)), weights_only=True
    )
    assert all(torch.equal(logged[k], best[k]) for k in best)
