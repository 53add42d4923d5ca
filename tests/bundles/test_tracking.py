"""A real bundle on phantoms is tracked by default: one MLflow run with its params, curves and artifacts."""

from __future__ import annotations

import pytest

from tests.bundles.conftest import TINY, run_workflow


@pytest.mark.slow
def test_cardiac_unet_run_lands_in_mlflow_once(phantom_data, tmp_path):
    from mlflow import MlflowClient

    from medseg.tracking import EXECUTE_CONFIG_SETTINGS

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = phantom_data("cardiac-png")
    # as medseg's commands run a bundle: MONAI exports the executed config, which the run records
    run_workflow("cardiac_unet", ("train",), dataset_dir=str(data), output_dir=str(tmp_path / "out"),
                 tracking_uri=uri, tracking=EXECUTE_CONFIG_SETTINGS, log_model=False,
                 **{**TINY, "max_epochs": 2, "learning_rate": 0.002})

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cardiac_unet/cardiac-png")
    assert experiment is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "a bundle run must create exactly one MLflow run"
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("cardiac_unet-train-")
    params = run.data.params
    assert float(params["learning_rate"]) == pytest.approx(0.002)
    assert params["max_epochs"] == "2" and params["seed"] == "0"
    assert params["network"] == "UNet" and params["loss"] == "DiceFocalLoss" and params["optimizer"] == "Adam"
    assert params["dataset"] == "cardiac-png" and params["network.out_channels"] == "4"
    assert run.data.tags["medseg.stop_reason"] == "max_epochs"
    assert len(run.data.tags["medseg.datalist_sha256"]) == 64
    metrics = ("train/loss", "val/loss", "val/mean_dice", "val/dice_left_ventricle", "train/lr", "train/epoch_time")
    for metric in metrics:
        history = client.get_metric_history(run.info.run_id, metric)
        assert [m.step for m in history] == [1, 2], metric
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    artifacts |= {a.path for folder in list(artifacts) for a in client.list_artifacts(run.info.run_id, folder)}
    assert any(a.endswith("learning_curve.png") for a in artifacts), artifacts
    assert any(a.endswith("metadata.json") for a in artifacts), artifacts
    assert any(a.endswith(".pt") for a in artifacts), artifacts
