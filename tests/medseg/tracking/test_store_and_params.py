"""Store resolution, naming and params collection: fast, no training, no MLflow store."""

from __future__ import annotations

import json
import socket

import pytest
from monai.bundle import ConfigParser

from medseg.tracking import bundle as bundle_info
from medseg.tracking import naming, store


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    return tmp_path


def test_default_store_is_under_medseg_home(clean_env):
    uri = store.resolve_tracking_uri()
    assert uri == f"sqlite:///{(clean_env / 'home' / 'mlflow.db').as_posix()}"
    assert store.artifact_location(uri) == (clean_env / "home" / "mlartifacts").as_uri()
    assert store.artifact_location("http://127.0.0.1:5000") is None


def test_env_then_explicit_override(clean_env, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert store.resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert store.resolve_tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"


def test_folder_store_is_refused_with_the_fix(clean_env):
    with pytest.raises(ValueError, match=r"sqlite:///.*/mlruns/mlflow.db"):
        store.resolve_tracking_uri("./mlruns")
    with pytest.raises(ValueError, match="folder"):
        store.resolve_tracking_uri("file:///tmp/mlruns")


def test_closed_port_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert not store.server_reachable(f"http://127.0.0.1:{port}", timeout=2)
    assert store.server_reachable("sqlite:////tmp/x.db")


def test_run_names_are_unique_and_say_what_ran():
    first = naming.run_name("isic unet")
    # one name per bundle run: MONAI parses the config twice (--tracking), and output_dir is named after the run
    assert naming.run_name("isic unet") == first and naming.run_name("isic unet", "evaluate") != first
    naming.release(first)  # the run started: the next run gets its own name
    second = naming.run_name("isic unet")
    assert first != second
    assert first.startswith("isic_unet-train-")
    assert naming.experiment_name("isic_unet", "isic2018") == "isic_unet/isic2018"
    assert naming.experiment_name("isic_unet", None) == "isic_unet"


CONFIG = {
    "imports": ["$import os"],
    "bundle_root": "/somewhere",
    "fold": 2,
    "learning_rate": 0.001,
    "spatial_size": [64, 64],
    "pretrained_weights": "weights/encoder.pt",
    "backbone": "resnet34",
    "network_def": {
        "_target_": "monai.networks.nets.FlexibleUNet",
        "in_channels": 3,
        "out_channels": 2,
        "backbone": "@backbone",
        "pretrained": False,
    },
    "loss": {"_target_": "DiceFocalLoss", "softmax": True, "gamma": 2.0, "weight": "$torch.tensor([1, 2])"},
    "optimizer": {"_target_": "torch.optim.AdamW", "params": "$@network.parameters()", "lr": "@learning_rate"},
    "initialize": ["$monai.utils.set_determinism(seed=42)"],
    "run": ["$@train#trainer.run()"],
}


def test_config_params_follow_references_and_skip_machinery():
    params = bundle_info.config_params(CONFIG)
    assert params["network"] == "FlexibleUNet"
    assert params["encoder"] == params["network.backbone"] == "resnet34"
    assert params["loss"] == "DiceFocalLoss" and params["loss.gamma"] == 2.0
    assert params["optimizer"] == "AdamW" and params["optimizer.lr"] == 0.001
    assert params["fold"] == 2 and params["seed"] == 42 and params["spatial_size"] == [64, 64]
    assert params["pretrained_weights"] == "weights/encoder.pt"
    assert params["loss.weight"] == "$torch.tensor([1, 2])"  # a component argument's expression is its definition
    for machinery in ("imports", "bundle_root", "run", "initialize", "optimizer.params"):
        assert machinery not in params
    assert bundle_info.format_params({"a": [1, 2], "b": True, "c": "x" * 600}) == {
        "a": "[1, 2]",
        "b": "true",
        "c": "x" * 497 + "...",
    }


def test_executed_config_comes_from_monais_export(tmp_path):
    """No stack walking: the config is MONAI's own export (a file path), or a dict, or nothing."""
    exported = tmp_path / "out" / "config_20261129_120000.json"
    exported.parent.mkdir()
    exported.write_text(json.dumps({"learning_rate": 0.5, "_meta_": {"name": "b"}}))
    assert bundle_info.executed_config(str(exported))["learning_rate"] == 0.5
    # MONAI's literal form when output_dir was given as a path: "DIR + '/config_<time>.json'"
    literal = f"{exported.parent} + '/{exported.name}'"
    assert bundle_info.executed_config(literal)["learning_rate"] == 0.5
    assert bundle_info.executed_config({"a": 1}) == {"a": 1}
    for nothing in (None, True, False, str(tmp_path / "missing.json")):
        assert bundle_info.executed_config(nothing) == {}
    # MONAI's run exports the config with the overrides applied when asked (what medseg's commands do)
    parser = ConfigParser({"output_dir": str(tmp_path / "run"), "learning_rate": 0.1, "save_execute_config": True})
    parser.update({"learning_rate": 0.5})
    from monai.bundle import ConfigWorkflow

    from medseg.tracking import EXECUTE_CONFIG_SETTINGS

    ConfigWorkflow.patch_bundle_tracking(parser, EXECUTE_CONFIG_SETTINGS)
    assert bundle_info.executed_config(parser.get_parsed_content("save_execute_config"))["learning_rate"] == 0.5


def test_tags_hash_the_datalist_and_name_the_commit(tmp_path):
    datalist = tmp_path / "datalist.json"
    datalist.write_text('{"name": "x", "labels": {}}')
    tags = bundle_info.run_tags({"name": "b", "version": "1.2.0"}, datalist, bundle_info.__file__.rsplit("/", 1)[0])
    assert tags["medseg.bundle"] == "b" and tags["medseg.bundle_version"] == "1.2.0"
    assert len(tags["medseg.datalist_sha256"]) == 64
    assert len(tags["mlflow.source.git.commit"]) == 40  # the medseg checkout is a git work tree
    assert tags["medseg.git_dirty"] in ("true", "false")
    assert tags["medseg.version.monai"] and tags["medseg.version.mlflow"]
    assert bundle_info.datalist_name(datalist) == "x"
    assert bundle_info.datalist_name(tmp_path / "missing.json") is None
