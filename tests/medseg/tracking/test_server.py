"""A real ``mlflow server`` on localhost, and a server that cannot be reached."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import mlflow
import pytest

from medseg.commands import sync as sync_command
from medseg.tracking.recorder import FALLBACK_TAG
from tests.medseg.tracking import servers, tiny_bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` with an SQLite backend and a local artifact folder; stopped with its process group."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    with servers.mlflow_server(f"sqlite:///{(folder / 'mlflow.db').as_posix()}", folder) as uri:
        yield uri


@pytest.fixture
def bundle(tmp_path):
    datalist = tiny_bundle.write_dataset(tmp_path / "data", n_train=2, n_val=1)
    return tiny_bundle.write_bundle(tmp_path / "bundles", datalist.parent)


def _artifacts(client, run_id, path=None):
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def test_bundle_run_against_a_real_server(server, bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    tiny_bundle.run_bundle(bundle, max_epochs=2, log_model=False)
    client = mlflow.MlflowClient(server)
    experiment = client.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["network"] == "UNet" and run.data.params["optimizer.lr"] == "0.01"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/mean_dice")] == [1, 2]
    found = _artifacts(client, run.info.run_id)
    assert {"config/executed_config.json", "checkpoints/model.pt", "plots/learning_curve.png"} <= set(found)
    png = Path(client.download_artifacts(run.info.run_id, "plots/learning_curve.png", str(tmp_path)))
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "home" / "mlflow.db").exists()  # nothing fell back to the local store


def test_unreachable_server_falls_back_to_the_local_store(bundle, tmp_path, monkeypatch, caplog):
    closed = f"http://127.0.0.1:{servers.free_port()}"
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed)
    with caplog.at_level(logging.WARNING, logger="medseg"):
        tiny_bundle.run_bundle(bundle, max_epochs=1, log_model=False)  # training runs to the end
    local = f"sqlite:///{(tmp_path / 'home' / 'mlflow.db').as_posix()}"
    (warning,) = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert closed in warning and local in warning and "medseg sync" in warning
    client = mlflow.MlflowClient(local)
    experiment = client.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["medseg.tracking_fallback_from"] == closed
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1]
    assert "plots/learning_curve.png" in _artifacts(client, run.info.run_id)


def test_a_server_that_stops_answering_is_left_within_seconds(bundle, tmp_path, monkeypatch, caplog):
    """A server that accepts connections and never answers (hung, or a dead proxy): MLflow's default timeouts and
    retries waited minutes; the bounded ones give up within seconds and the run goes local."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # connections complete in the kernel's backlog; nothing ever answers
    uri = f"http://127.0.0.1:{hung.getsockname()[1]}"
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in (
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    ):
        monkeypatch.delenv(name, raising=False)  # medseg's bounds apply
    from medseg.tracking import store

    started = time.monotonic()
    try:
        with pytest.raises(store.StoreUnusable):
            store.open_client(uri)
        detected = time.monotonic() - started
        with caplog.at_level(logging.WARNING, logger="medseg"):
            tiny_bundle.run_bundle(bundle, max_epochs=1, log_model=False)
    finally:
        hung.close()
    assert detected < 20, detected  # 5 s timeout, one retry: about 11 s (MLflow's defaults: minutes)
    local = f"sqlite:///{(tmp_path / 'home' / 'mlflow.db').as_posix()}"
    client = mlflow.MlflowClient(local)
    experiment = client.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags[FALLBACK_TAG] == uri


def test_sync_copies_a_local_run_to_the_server(server, bundle, tmp_path, monkeypatch, capsys):
    """A run kept locally while the server was away goes to the server with ``medseg sync``, once."""
    local = f"sqlite:///{(tmp_path / 'home' / 'mlflow.db').as_posix()}"
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{servers.free_port()}")  # away
    tiny_bundle.run_bundle(bundle, max_epochs=2, log_model=False)
    source = mlflow.MlflowClient(local)
    (run,) = source.search_runs([e.experiment_id for e in source.search_experiments()])
    source.set_tag(run.info.run_id, FALLBACK_TAG, server)  # as if it had been this server that went away
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    argv = __import__("argparse").Namespace(target=None, source=local, runs=None)
    assert sync_command.run(argv) == 0
    assert "copied 1 run(s)" in capsys.readouterr().out
    target = mlflow.MlflowClient(server)
    experiment = target.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
    copies = [r for r in target.search_runs([experiment.experiment_id]) if "medseg.synced_from" in r.data.tags]
    (copy,) = copies
    assert copy.info.run_name == run.info.run_name and copy.info.status == "FINISHED"
    assert copy.data.params == run.data.params
    for key in ("train/loss", "val/mean_dice"):
        assert [(m.step, m.value) for m in target.get_metric_history(copy.info.run_id, key)] == [
            (m.step, m.value) for m in source.get_metric_history(run.info.run_id, key)
        ]
    assert set(_artifacts(target, copy.info.run_id)) == set(_artifacts(source, run.info.run_id))
    assert sync_command.run(argv) == 0 and "nothing to copy" in capsys.readouterr().out  # not twice
    bad = __import__("argparse").Namespace(target=server, source=local, runs=["0123"])
    assert sync_command.run(bad) == 1 and "no run 0123" in capsys.readouterr().err
