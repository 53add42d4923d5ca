"""No lost, stuck or mixed runs: SIGTERM, a second training into one folder, a corrupt or unwritable store, two
first starts on a new SQLite store, and a bundle run without MONAI's executed config."""

from __future__ import annotations

import logging
import multiprocessing

import mlflow
import pytest
import torch

from medseg.bundle.errors import BundleInputError
from medseg.tracking import store
from medseg.tracking.locks import OutputDirLock
from tests.medseg.tracking import tiny_bundle

pytestmark = pytest.mark.slow
EXPERIMENT = f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "home"


@pytest.fixture
def bundle(tmp_path):
    datalist = tiny_bundle.write_dataset(tmp_path / "data")
    return tiny_bundle.write_bundle(tmp_path / "bundles", datalist.parent)


def _runs(uri: str) -> list:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_sigterm_ends_the_run_killed_with_consistent_checkpoints(home, bundle, caplog):
    with caplog.at_level(logging.WARNING), pytest.raises(SystemExit) as raised:
        tiny_bundle.run_bundle(
            bundle, log_model=False, **{"network_def#_target_": "tests.medseg.tracking.tiny_bundle.SigtermUNet"}
        )
    assert raised.value.code == 143  # 128 + SIGTERM, as a terminated program exits
    (run,) = _runs(store.local_store_uri())
    assert run.info.status == "KILLED" and run.data.tags["medseg.stop_reason"] == "sigterm"
    assert [
        m.step for m in mlflow.MlflowClient(store.local_store_uri()).get_metric_history(run.info.run_id, "train/loss")
    ] == [1]
    models = bundle / "models"
    state = torch.load(models / "model.pt", weights_only=True)  # the best (epoch 1) checkpoint, whole
    tiny_bundle.UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0).load_state_dict(state)
    assert not [p for p in models.iterdir() if p.suffix in (".partial", ".tmp")]
    assert sum("SIGTERM" in r.getMessage() for r in caplog.records) == 1
    # the SIGTERM handler is gone and the folder's lock released: the next training runs normally
    tiny_bundle.run_bundle(bundle, max_epochs=1, log_model=False)
    assert {r.info.status for r in _runs(store.local_store_uri())} == {"KILLED", "FINISHED"}


def test_second_training_into_one_folder_is_refused(home, bundle):
    holder = OutputDirLock(bundle / "models", "the-first-run")
    holder.acquire()
    try:
        with pytest.raises(BundleInputError) as raised:
            tiny_bundle.run_bundle(bundle, max_epochs=1, log_model=False)
    finally:
        holder.release()
    message = str(raised.value)
    assert "another training is writing here (run the-first-run, pid" in message and "--output_dir" in message
    assert "\n" not in message and not _runs(store.local_store_uri())


@pytest.mark.parametrize("damage", ["corrupt", "unwritable"])
def test_broken_store_falls_back_to_a_fresh_one(home, bundle, tmp_path, monkeypatch, caplog, damage):
    if damage == "corrupt":
        home.mkdir(parents=True)
        (home / "mlflow.db").write_bytes(b"this is not a database" * 100)
    else:  # a MEDSEG_HOME below a file cannot be created, even by root
        (tmp_path / "a_file").write_text("")
        monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "a_file" / "home"))
    with caplog.at_level(logging.WARNING, logger="medseg"):
        tiny_bundle.run_bundle(bundle, max_epochs=1, log_model=False)  # training is never stopped by tracking
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "MLflow" in r.getMessage()]
    assert len(warnings) == 1 and "a fresh local store" in warnings[0], warnings
    (fresh,) = (bundle / "models" / "mlflow").glob("mlflow-*.db")
    (run,) = _runs(f"sqlite:///{fresh.as_posix()}")
    assert run.info.status == "FINISHED" and run.data.tags["medseg.tracking_fallback_from"].startswith("sqlite:///")
    assert run.data.params["learning_rate"] == "0.01"


def _open_and_write(uri: str, name: str, queue) -> None:
    try:
        client = store.open_client(uri)
        experiment = client.get_experiment_by_name("race") or client.get_experiment(client.create_experiment("race"))
        client.create_run(experiment.experiment_id, run_name=name)
        queue.put("ok")
    except Exception as error:  # a lost race: MLflow's migration or the experiment's creation
        queue.put(f"{type(error).__name__}: {error}")


def test_two_first_starts_on_a_new_store(tmp_path):
    uri = store.sqlite_uri(tmp_path / "new" / "mlflow.db")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_open_and_write, args=(uri, f"run{i}", queue)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    results = [queue.get(timeout=5) for _ in workers]
    # both open the store; one may lose the experiment's creation race, which MLflow reports as such
    assert all(r == "ok" or "already exists" in r.lower() or "unique constraint" in r.lower() for r in results), results
    assert "ok" in results
    assert not any("alembic" in r.lower() or "no such table" in r.lower() for r in results), results


def test_without_the_executed_config_the_run_says_so_and_keeps_its_params(home, bundle, caplog):
    with caplog.at_level(logging.WARNING, logger="medseg"):
        tiny_bundle.run_bundle(bundle, max_epochs=1, log_model=False, tracking=None)  # plain monai.bundle run
    (warning,) = [r.getMessage() for r in caplog.records if "no executed config" in r.getMessage()]
    assert "--tracking mlflow" in warning
    (run,) = _runs(store.local_store_uri())
    assert run.data.params["learning_rate"] == "0.01" and run.data.params["optimizer.lr"] == "0.01"
    artifacts = {a.path for a in mlflow.MlflowClient(store.local_store_uri()).list_artifacts(run.info.run_id, "config")}
    assert artifacts == {"config/metadata.json"}
