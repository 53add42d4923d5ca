"""A training run the MLflow way: a logged model (no pickle) registered by name, dataset inputs, system metrics,
user and source tags, and the model resolved back to a checkpoint for ``medseg package``."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml

from medseg.sharing.errors import SharingError
from medseg.tracking import resolve_model_checkpoint
from tests.helpers import private_tracking_store
from tests.medseg.tracking import tiny_bundle

pytestmark = pytest.mark.slow
MODEL_NAME = "tiny-squares"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training that logs and registers its model, with system metrics sampled every second."""
    root = tmp_path_factory.mktemp("models")
    with private_tracking_store(root / "home") as home, pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
        datalist = tiny_bundle.write_dataset(root / "data")
        bundle = tiny_bundle.write_bundle(root / "bundles", datalist.parent)
        metadata = {
            "name": tiny_bundle.BUNDLE_NAME,
            "version": "0.1.2",
            "description": "tiny squares, for tests",
            "network_data_format": {"inputs": {"image": {"num_channels": 1, "spatial_shape": [32, 32]}}},
        }
        (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata))
        (bundle / "configs" / "inference.json").write_text(json.dumps({"network_def": "see train.json"}))
        tiny_bundle.run_bundle(bundle, max_epochs=2, register_model_name=MODEL_NAME)
        uri = f"sqlite:///{(home / 'mlflow.db').as_posix()}"
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(f"{tiny_bundle.BUNDLE_NAME}/{tiny_bundle.DATASET_NAME}")
        (run,) = client.search_runs([experiment.experiment_id])
        yield {"client": client, "run": run, "experiment": experiment, "bundle": bundle, "home": home, "uri": uri}


def test_model_is_logged_registered_and_safe_to_load(trained, tmp_path):
    client, run = trained["client"], trained["run"]
    model_uri = run.data.tags["medseg.model_uri"]
    assert model_uri.startswith("models:/m-")
    (version,) = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert version.run_id == run.info.run_id and run.data.tags["medseg.registered_model"] == f"models:/{MODEL_NAME}/1"
    uri = trained["uri"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        folder = mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "model"))
    mlmodel = yaml.safe_load(open(f"{folder}/MLmodel"))
    flavor = mlmodel["flavors"]["pytorch"]
    # an ExportedProgram (torch.export), not a pickled module: loading it runs no code from the sender
    assert "pickle_module_name" not in flavor
    files = {p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file()}
    assert "data/model.pt2" in files and not any(f.endswith((".pkl", "model.pth")) for f in files)
    assert {"extra_files/inference.json", "extra_files/metadata.json"} <= files
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert inputs[0]["tensor-spec"]["shape"] == [-1, 1, 32, 32] or inputs[0]["tensor-spec"]["shape"][1:] == [1, 32, 32]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        model = mlflow.pytorch.load_model(f"models:/{MODEL_NAME}/1")
    output = model(torch.zeros(3, 1, 32, 32))  # another batch size than the example's
    assert tuple(output.shape) == (3, 2, 32, 32)
    # the logged model holds the best checkpoint's weights
    checkpoint, _ = resolve_model_checkpoint(f"models:/{MODEL_NAME}/1", uri, tmp_path / "ck")
    network = tiny_bundle.UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0).eval()
    state = torch.load(checkpoint, weights_only=True)
    network.load_state_dict(state.get("model", state))
    x = torch.from_numpy(np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32))
    with torch.no_grad():
        assert torch.allclose(model(x), network(x), atol=1e-5)


def test_model_uris_resolve_to_the_checkpoint(trained, tmp_path):
    client, run = trained["client"], trained["run"]
    uri = trained["uri"]
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")
    by_version, info = resolve_model_checkpoint(f"models:/{MODEL_NAME}/1", uri, tmp_path / "a")
    by_alias, alias_info = resolve_model_checkpoint(f"models:/{MODEL_NAME}@champion", uri, tmp_path / "b")
    by_run, _ = resolve_model_checkpoint(run.info.run_id, uri, tmp_path / "c")
    assert info.run_id == alias_info.run_id == run.info.run_id and info.model_uri == f"models:/{MODEL_NAME}/1"
    assert by_version.read_bytes() == by_alias.read_bytes() == by_run.read_bytes()
    assert by_version.name == "model.pt" and info.params["learning_rate"] == "0.01"
    with pytest.raises(SharingError, match=rf"models:/{MODEL_NAME}/7.*known: models:/{MODEL_NAME}/1"):
        resolve_model_checkpoint(f"models:/{MODEL_NAME}/7", uri, tmp_path / "d")
    with pytest.raises(SharingError, match="models:/nobody@best"):
        resolve_model_checkpoint("models:/nobody@best", uri, tmp_path / "e")


def test_datalist_is_a_dataset_input(trained):
    run = trained["run"]
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {f"{tiny_bundle.DATASET_NAME}/training", f"{tiny_bundle.DATASET_NAME}/validation"}
    training = inputs[f"{tiny_bundle.DATASET_NAME}/training"]
    assert {t.key: t.value for t in training.tags}["mlflow.data.context"] == "training"
    assert json.loads(training.dataset.profile)["num_rows"] == 4
    assert "datalist.json" in training.dataset.source and len(training.dataset.digest) == 16
    assert training.dataset.digest != inputs[f"{tiny_bundle.DATASET_NAME}/validation"].dataset.digest


def test_system_metrics_tags_and_experiment_description(trained):
    run, experiment = trained["run"], trained["experiment"]
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics), sorted(run.data.metrics)
    assert any(k.startswith("system/system_memory") for k in run.data.metrics)
    tags = run.data.tags
    assert tags["mlflow.user"] and tags["mlflow.source.name"] == str(trained["bundle"].resolve())
    assert experiment.tags["mlflow.note.content"] == "tiny squares, for tests"
    assert run.data.tags["medseg.key_metric"] == "val/mean_dice"


def test_export_copy_of_a_deep_supervision_network_after_training(tmp_path):
    """DynUNet as a bundle leaves it: its last training forward left graph tensors in ``heads`` (which deepcopy
    refuses) and its checkpoint has no deep-supervision heads. The copy loads that checkpoint strictly, lacks the
    heads, and gives the inference network's output; the trained network is left as it was."""
    from monai.networks.nets import DynUNet

    from medseg.bundle import StateDictWithout
    from medseg.tracking.models import network_for_export

    def dynunet(deep_supervision: bool) -> DynUNet:
        return DynUNet(2, 1, 3, [3, 3, 3], [1, 2, 2], [2, 2], norm_name="instance",
                       deep_supervision=deep_supervision, deep_supr_num=1)

    trained = dynunet(True).train()
    trained(torch.rand(2, 1, 32, 32)).sum().backward()
    assert any(h.grad_fn is not None for h in trained.heads)
    view = StateDictWithout(trained, drop="deep_supervision_heads|super_head")
    torch.save(view.state_dict(), tmp_path / "model.pt")

    model = network_for_export(view, tmp_path / "model.pt")
    assert not model.training and not any("super_head" in k or "deep_supervision" in k for k in model.state_dict())
    inference = dynunet(False).eval()
    inference.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), inference(x))
    assert trained.training and trained.deep_supervision_heads is not None
    # a checkpoint that lacks a weight the network needs is refused, not silently filled in
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("output_block")}, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="Missing key"):
        network_for_export(view, tmp_path / "bad.pt")


def test_export_copy_of_a_compiled_network_is_uncompiled():
    """A run with ``compile: true`` trains a network whose forward is a torch.compile wrapper, which torch.export
    cannot trace: the copy has the module's own forward (and the trained network stays compiled)."""
    from medseg.runtime.network import compile_network, is_compiled
    from medseg.tracking.models import network_for_export

    network = compile_network(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1)))
    assert is_compiled(network)
    model = network_for_export(network, None)
    assert not is_compiled(model) and is_compiled(network)
    x = torch.rand(2, 1, 8, 8)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.equal(program.module()(x), model(x))
