"""A tiny bundle with the documented tracking block, run in-process and read back from one SQLite store.

One store for the module (MLflow's SQLite migrations cost seconds); ``MEDSEG_HOME`` points at it so the home
folder is never touched.
"""

from __future__ import annotations

import argparse
import json

import mlflow
import pytest

from medseg.commands import compare as compare_command
from tests.helpers import private_tracking_store
from tests.medseg.tracking import tiny_bundle

pytestmark = pytest.mark.slow
MAX_EPOCHS = 2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """MEDSEG_HOME in a temporary folder and no MLFLOW_TRACKING_URI, for the whole module."""
    with private_tracking_store(tmp_path_factory.mktemp("medseg_home")) as home:
        yield home


@pytest.fixture(scope="module")
def bundle(store, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    datalist = tiny_bundle.write_dataset(root / "data")
    return tiny_bundle.write_bundle(root / "bundles", datalist.parent)


@pytest.fixture(scope="module")
def client(store):
    return mlflow.MlflowClient(f"sqlite:///{(store / 'mlflow.db').as_posix()}")


def _experiment_runs(client):
    experiment = client.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
    return [] if experiment is None else client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


@pytest.fixture(scope="module")
def two_runs(bundle, client):
    """A plain run (lr 0.01) and one with MONAI's --tracking mlflow (lr 0.05): each must add exactly one run."""
    tiny_bundle.run_bundle(bundle, max_epochs=MAX_EPOCHS, log_model=False)
    after_plain = _experiment_runs(client)
    tiny_bundle.run_bundle(bundle, tracking="mlflow", learning_rate=0.05, max_epochs=MAX_EPOCHS, log_model=False)
    after_both = _experiment_runs(client)
    return after_plain, after_both


def _artifacts(client, run_id, path=None):
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def test_each_bundle_run_is_one_run(two_runs):
    after_plain, after_both = two_runs
    assert len(after_plain) == 1
    assert len(after_both) == 2, [r.info.run_name for r in after_both]
    assert all(run.info.status == "FINISHED" for run in after_both)
    assert after_both[0].info.run_name != after_both[1].info.run_name


def test_params_define_the_run(two_runs):
    plain, tracked = two_runs[1]
    params = plain.data.params
    expected = {
        "network": "UNet",
        "network.channels": "[4, 8]",
        "loss": "DiceCELoss",
        "optimizer": "Adam",
        "optimizer.lr": "0.01",
        "optimizer.weight_decay": "0.0001",
        "lr_scheduler": "StepLR",
        "lr_scheduler.gamma": "0.5",
        "batch_size": "2",
        "spatial_size": "[32, 32]",
        "max_epochs": str(MAX_EPOCHS),
        "early_stopping.patience": "5",
        "augment.RandFlipd": "0.5",
        "seed": "7",
        "dataset": tiny_bundle.DATASET_NAME,
        "fold": "0",
        "key_metric": "val/mean_dice",
        "learning_rate": "0.01",
        "data.training_items": "4",
        "data.validation_items": "2",
    }
    assert {k: params.get(k) for k in expected} == expected
    assert tracked.data.params["optimizer.lr"] == "0.05"  # the command-line override is what was run
    assert tracked.data.params["learning_rate"] == "0.05"
    assert float(params["data.class_fraction.square"]) > 0  # from stats.json, by label name


def test_tags_identify_code_data_and_machine(two_runs):
    tags = two_runs[1][0].data.tags
    assert tags["medseg.bundle"] == tiny_bundle.BUNDLE_NAME and tags["medseg.bundle_version"] == "0.1.2"
    assert len(tags["medseg.datalist_sha256"]) == 64
    assert tags["medseg.device"] == "cpu"
    assert tags["medseg.stop_reason"] == "max_epochs"
    for package in ("medseg", "monai", "torch", "mlflow"):
        assert tags[f"medseg.version.{package}"]
    assert "mlflow.source.git.commit" in tags and "medseg.git_dirty" in tags


def test_one_metric_point_per_epoch(two_runs, client):
    for run in two_runs[1]:  # the --tracking mlflow run too: MONAI's handler was folded in, not doubled
        for key in ("train/loss", "val/loss", "val/mean_dice", "train/lr", "train/epoch_time"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == list(range(1, MAX_EPOCHS + 1)), (key, steps)
        lrs = [m.value for m in client.get_metric_history(run.info.run_id, "train/lr")]
        assert lrs[1] == pytest.approx(lrs[0] * 0.5)  # StepLR(gamma=0.5) is visible per epoch
        metrics = run.data.metrics
        best = max(m.value for m in client.get_metric_history(run.info.run_id, "val/mean_dice"))
        assert metrics["val/best_mean_dice"] == pytest.approx(best)
        assert 1 <= metrics["val/best_mean_dice_epoch"] <= MAX_EPOCHS


def test_artifacts(two_runs, client, tmp_path):
    plain, tracked = two_runs[1]
    found = _artifacts(client, plain.info.run_id)
    assert {
        "config/executed_config.json",
        "config/metadata.json",
        "checkpoints/model.pt",
        "plots/learning_curve.png",
        "data/datalist.json",
        "data/stats.json",
    } <= set(found)
    assert len([f for f in found if f.startswith("overlays/") and f.endswith(".png")]) == 2  # both validation cases
    config = json.loads(
        open(client.download_artifacts(plain.info.run_id, "config/executed_config.json", str(tmp_path))).read()
    )
    assert config["max_epochs"] == MAX_EPOCHS and config["_meta_"]["name"] == tiny_bundle.BUNDLE_NAME
    # with --tracking mlflow, MONAI's exported config is kept in the same run
    assert any(f.startswith("extra/config_") for f in _artifacts(client, tracked.info.run_id))


def test_compare_two_learning_rates(two_runs, store, tmp_path, capsys, client):
    runs = two_runs[1]
    args = argparse.Namespace(
        tracking_uri=None, experiment=None, runs=None, metric="val/mean_dice", out=None, order="auto", all=False
    )
    assert compare_command.run(args) == 0
    out = capsys.readouterr().out
    differing = next(line for line in out.splitlines() if line.startswith("params that differ: "))
    # learning_rate and optimizer.lr always vary together: one of them stands for both
    assert differing == "params that differ: optimizer.lr"
    assert max(len(line) for line in out.splitlines() if not line.startswith(("learning curves", "MLflow"))) <= 120
    for run in runs:
        assert run.info.run_id[:8] in out
    assert "lr=0.05" in out and "lr=0.01" in out  # each run labelled by what differs
    png = store / "compare" / "compare_val_mean_dice.png"  # beside the store by default
    assert png.is_file() and png.stat().st_size > 1000
    # an evaluation run in the experiment is left out unless --all
    evaluation = client.create_run(
        runs[0].info.experiment_id, run_name="an evaluation", tags={"medseg.run_kind": "evaluate"}
    )
    client.log_metric(evaluation.info.run_id, "val/mean_dice", 0.99)
    client.set_terminated(evaluation.info.run_id)
    assert compare_command.run(args) == 0
    assert evaluation.info.run_id[:8] not in capsys.readouterr().out
    assert compare_command.run(argparse.Namespace(**(vars(args) | {"all": True, "out": str(tmp_path)}))) == 0
    assert evaluation.info.run_id[:8] in capsys.readouterr().out
    client.delete_run(evaluation.info.run_id)


def test_compare_says_what_is_missing(two_runs, client, tmp_path, capsys):
    client.create_experiment("empty one")
    base = dict(tracking_uri=None, experiment=None, runs=None, metric=None, out=str(tmp_path), order="auto", all=False)
    cases = {
        "no experiment named 'nope'": dict(experiment="nope"),
        "'empty one' has no runs": dict(experiment="empty one"),
        "no run has a metric 'dice'; choose --metric from: ": dict(metric="dice"),
        "unknown run id(s): 0123abcd": dict(runs=["0123abcd"]),
    }
    for message, changed in cases.items():
        assert compare_command.run(argparse.Namespace(**(base | changed))) == 1
        assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


def test_failing_training_ends_failed_with_the_error(bundle, client, tmp_path):
    before = {r.info.run_id for r in _experiment_runs(client)}
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps it: "Failed to evaluate ConfigExpression"
        tiny_bundle.run_bundle(
            bundle, log_model=False, **{"network_def#_target_": "tests.medseg.tracking.tiny_bundle.RaisingUNet"}
        )
    assert "phantom failure" in str(raised.value.__cause__)
    (run,) = [r for r in _experiment_runs(client) if r.info.run_id not in before]
    assert run.info.status == "FAILED"
    assert "RuntimeError: phantom failure in forward" in run.data.tags["medseg.error"]
    assert run.data.tags["medseg.stop_reason"] == "failed"
    error = open(client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))).read()
    assert "Traceback" in error and "phantom failure" in error


def test_ctrl_c_ends_killed(bundle, client):
    before = {r.info.run_id for r in _experiment_runs(client)}
    with pytest.raises(KeyboardInterrupt):
        tiny_bundle.run_bundle(bundle, **{"network_def#_target_": "tests.medseg.tracking.tiny_bundle.InterruptedUNet"})
    (run,) = [r for r in _experiment_runs(client) if r.info.run_id not in before]
    assert run.info.status == "KILLED"


def test_tracking_uri_override_wins_over_environment(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # would be unreachable if it were used
    other = f"sqlite:///{(tmp_path / 'other.db').as_posix()}"
    tiny_bundle.run_bundle(bundle, tracking_uri=other, max_epochs=1, experiment_name="override test", log_model=False)
    runs = mlflow.MlflowClient(other).search_runs(
        [mlflow.MlflowClient(other).get_experiment_by_name("override test").experiment_id]
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "medseg.tracking_fallback_from" not in runs[0].data.tags


def test_evaluation_run_with_the_evaluate_block(bundle, client):
    """evaluate.json layered on train.json, with the documented evaluate block pasted at its end."""
    evaluate = {
        "validate#handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        "run": ["$@validate#evaluator.run()"],
    } | tiny_bundle.documented_block("evaluate")
    (bundle / "configs" / "evaluate.json").write_text(json.dumps(evaluate))
    (bundle / "models").mkdir(exist_ok=True)
    (bundle / "models" / "report.html").write_text("<html>report</html>")
    before = {r.info.run_id for r in _experiment_runs(client)}
    from monai.bundle import run

    from medseg.tracking import EXECUTE_CONFIG_SETTINGS

    run(
        config_file=[str(bundle / "configs" / "train.json"), str(bundle / "configs" / "evaluate.json")],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        tracking=EXECUTE_CONFIG_SETTINGS,
    )
    (new,) = [r for r in _experiment_runs(client) if r.info.run_id not in before]
    assert new.info.status == "FINISHED" and "-evaluate-" in new.info.run_name
    assert new.data.params["run_kind"] == "evaluate"
    assert [m.step for m in client.get_metric_history(new.info.run_id, "eval/mean_dice")] == [1]
    found = _artifacts(client, new.info.run_id)
    assert "extra/report.html" in found and "config/executed_config.json" in found
    assert not any(f.startswith("checkpoints/") for f in found)
