"""A real ``mlflow server`` on localhost, and a server that cannot be reached."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from tests.medseg.tracking import tiny_bundle

pytestmark = pytest.mark.slow
MLFLOW_CLI = Path(sys.executable).with_name("mlflow")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` with an SQLite backend and a local artifact folder; stopped with its process group."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [
            str(MLFLOW_CLI),
            "server",
            "--backend-store-uri",
            f"sqlite:///{(folder / 'mlflow.db').as_posix()}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=folder,  # MLflow may create ./mlruns for its Default experiment: keep it out of the checkout
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


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
    tiny_bundle.run_bundle(bundle, max_epochs=2)
    client = mlflow.MlflowClient(server)
    experiment = client.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["network"] == "UNet" and run.data.params["optimizer.lr"] == "0.01"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mean_dice")] == [1, 2]
    found = _artifacts(client, run.info.run_id)
    assert {"config/executed_config.json", "checkpoints/model.pt", "plots/learning_curve.png"} <= set(found)
    png = Path(client.download_artifacts(run.info.run_id, "plots/learning_curve.png", str(tmp_path)))
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "home" / "mlflow.db").exists()  # nothing fell back to the local store


def test_unreachable_server_falls_back_to_the_local_store(bundle, tmp_path, monkeypatch, caplog):
    closed = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with caplog.at_level(logging.WARNING, logger="medseg.handlers.tracking"):
        tiny_bundle.run_bundle(bundle, max_epochs=1)  # training runs to the end
    local = f"sqlite:///{(tmp_path / 'home' / 'mlflow.db').as_posix()}"
    (warning,) = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert closed in warning and local in warning
    client = mlflow.MlflowClient(local)
    experiment = client.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["medseg.tracking_fallback_from"] == closed
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1]
    assert "plots/learning_curve.png" in _artifacts(client, run.info.run_id)
