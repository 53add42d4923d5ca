"""The documented team server, for real: PostgreSQL on localhost, ``mlflow server`` with it as the backend store and
``--artifacts-destination``, a tiny training that registers its model, and everything read back through the
server. Skips, saying why, where PostgreSQL or psycopg2 cannot be had (``.ci/run`` installs both)."""

from __future__ import annotations

import mlflow
import pytest
import torch

from medseg.tracking import resolve_model_checkpoint
from tests.medseg.tracking import servers, tiny_bundle

pytestmark = pytest.mark.slow
MODEL_NAME = "tiny-team-model"


@pytest.fixture(scope="module")
def team_server(tmp_path_factory):
    reason = servers.postgres_unavailable()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("team_server")
    with servers.postgres() as database, servers.mlflow_server(database, folder) as uri:
        yield uri, folder


def test_training_against_a_postgresql_backed_server(team_server, tmp_path, monkeypatch):
    uri, folder = team_server
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    datalist = tiny_bundle.write_dataset(tmp_path / "data", n_train=2, n_val=1)
    bundle = tiny_bundle.write_bundle(tmp_path / "bundles", datalist.parent)
    tiny_bundle.run_bundle(bundle, max_epochs=2, register_model_name=MODEL_NAME)

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and "medseg.tracking_fallback_from" not in run.data.tags
    assert run.data.params["learning_rate"] == "0.01" and run.data.params["network"] == "UNet"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/mean_dice")] == [1, 2]
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"tinyphantoms/training", "tinyphantoms/validation"}
    (version,) = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert version.run_id == run.info.run_id
    # artifacts went through the server into --artifacts-destination
    assert list((folder / "artifacts").rglob("model.pt")) and list((folder / "artifacts").rglob("model.pt2"))
    checkpoint, info = resolve_model_checkpoint(f"models:/{MODEL_NAME}/1", uri, tmp_path / "back")
    assert info.run_id == run.info.run_id and set(torch.load(checkpoint, weights_only=True))
    model = mlflow.pytorch.load_model(f"models:/{MODEL_NAME}/1")
    assert tuple(model(torch.zeros(1, 1, 32, 32)).shape) == (1, 2, 32, 32)
    assert not (tmp_path / "home" / "mlflow.db").exists()  # nothing fell back to the local store
