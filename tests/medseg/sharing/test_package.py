"""medseg package: a checked, self-contained bundle whose masks match monai.bundle run's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from medseg import cli
from medseg.sharing.check import check_bundle
from medseg.sharing.errors import SharingError
from medseg.sharing.package import bump_version, package, prune_imports
from medseg.sharing.predict import predict
from tests.medseg.sharing.bundle_factory import make_bundle
from tests.medseg.sharing.conftest import write_rgb_images


@pytest.fixture
def source_bundle(tmp_path):
    """A source bundle (no models/) and a 'trained' checkpoint in MONAI CheckpointSaver form."""
    src = make_bundle(tmp_path / "isic_tiny", seed=3)
    state = torch.load(src / "models" / "model.pt", weights_only=True)
    shutil.rmtree(src / "models")
    meta = json.loads((src / "configs" / "metadata.json").read_text())
    del meta["model_sha256"]
    (src / "configs" / "metadata.json").write_text(json.dumps(meta))
    checkpoint = tmp_path / "checkpoint_key_metric=0.5.pt"
    torch.save({"model": state, "optimizer": {"state": {}}}, checkpoint)
    return src, checkpoint


def test_bump_version_and_prune_imports():
    assert bump_version("0.1.9") == "0.1.10" and bump_version("x") == "0.1.0"
    config = {"imports": ["$import os", "$import torch", "$import numpy as np"], "a": "$torch.ones(1)", "b": "$np.e"}
    pruned, dropped = prune_imports(config)
    assert pruned["imports"] == ["$import torch", "$import numpy as np"] and dropped == ["$import os"]


@pytest.mark.slow
def test_package_unzip_and_both_runners_agree(source_bundle, schema, tmp_path, monkeypatch):
    src, checkpoint = source_bundle
    monkeypatch.setitem(cli.COMMANDS, "package", ("medseg.commands.package", "package"))
    # --no_amp: both runners in fp32, where a random network's masks agree exactly (see test_manifest)
    args = ["package", "--bundle", str(src), "--run", str(checkpoint), "--out", str(tmp_path / "dist"), "--no_amp"]
    assert cli.main([*args, "--schema", str(schema)]) == 0
    folder, archive = tmp_path / "dist" / "isic_tiny_v0.1.1", tmp_path / "dist" / "isic_tiny_v0.1.1.zip"
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == [folder.name, archive.name]
    names = set(zipfile.ZipFile(archive).namelist())
    for rel in (
        "configs/metadata.json",
        "configs/inference.json",
        "models/model.pt",
        "models/model.ts",
        "docs/README.md",
        "docs/data_license.txt",
        "LICENSE",
        "configs/meta_schema.json",
    ):
        assert f"isic_tiny_v0.1.1/{rel}" in names
    meta = json.loads((folder / "configs" / "metadata.json").read_text())
    assert meta["version"] == "0.1.1" and "0.1.1" in meta["changelog"] and "0.1.0" in meta["changelog"]
    assert set(meta["model_sha256"]) == {"models/model.pt", "models/model.ts"}
    assert json.loads((folder / "manifest.json").read_text())["inference"]["amp"] is False
    card = (folder / "docs" / "README.md").read_text()
    assert "not for clinical use" in card.lower() and "no metrics are reported" in card
    assert cli.main([*args, "--schema", str(schema)]) == 2  # the same version again: refused

    # a colleague unzips it elsewhere and runs it both ways
    shutil.unpack_archive(archive, tmp_path / "colleague")
    bundle = tmp_path / "colleague" / "isic_tiny_v0.1.1"
    assert check_bundle(bundle).passed  # with the schema copy shipped in the package
    images = tmp_path / "images"
    paths = write_rgb_images(images, sizes=((40, 50), (37, 61)), seed=1)
    (images / "datalist.json").write_text(json.dumps({"testing": [{"image": p.name} for p in paths]}))
    monai_out = tmp_path / "monai_out"
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(bundle / "configs/inference.json"),
        "--bundle_root",
        str(bundle),
        "--dataset_dir",
        str(images),
        "--output_dir",
        str(monai_out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = predict(tmp_path / "dist" / archive.name, paths[0].parent / paths[0].name, tmp_path / "ours_0")
    predict(archive, paths[1], tmp_path / "ours_1")
    assert not result.skipped
    for i, path in enumerate(paths):
        theirs = np.asarray(Image.open(monai_out / f"{path.stem}_seg.png"))
        ours = np.asarray(Image.open(tmp_path / f"ours_{i}" / f"{path.stem}_mask.png"))
        assert ours.shape == theirs.shape == np.asarray(Image.open(path)).shape[:2]
        np.testing.assert_array_equal(ours > 0, theirs > 0)


def test_checkpoint_that_does_not_fit(source_bundle, schema, tmp_path):
    src, _ = source_bundle
    wrong = tmp_path / "wrong.pt"
    torch.save({"weight": torch.zeros(3)}, wrong)
    with pytest.raises(SharingError, match="does not fit"):
        package(src, str(wrong), tmp_path / "dist", schema=schema)
    assert list((tmp_path / "dist").iterdir()) == []


def test_missing_checkpoint_or_run(source_bundle, schema, tmp_path):
    src, _ = source_bundle
    with pytest.raises(SharingError, match="checkpoint not found"):
        package(src, str(tmp_path / "nope.pt"), tmp_path / "dist", schema=schema)
    with pytest.raises(SharingError, match="is not a version"):
        package(src, str(tmp_path / "nope.pt"), tmp_path / "dist", version="1.0", schema=schema)


@pytest.mark.slow
def test_package_from_mlflow_run(source_bundle, schema, tmp_path):
    import mlflow

    src, checkpoint = source_bundle
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("sharing", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment, run_name="isic_tiny-train")
    run_id = run.info.run_id
    client.log_param(run_id, "dataset", "isic phantoms (12 images)")
    for epoch, (loss, dice) in enumerate([(0.9, 0.31), (0.7, 0.52)], start=1):
        client.log_metric(run_id, "train_loss", loss, step=epoch)
        client.log_metric(run_id, "val_mean_dice", dice, step=epoch)
    client.log_metric(run_id, "best_val_mean_dice", 0.52)
    client.log_artifact(run_id, str(checkpoint), "checkpoints")
    client.set_terminated(run_id)
    result = package(src, run_id, tmp_path / "dist", version="1.0.0", schema=schema, tracking_uri=uri)
    meta = json.loads((result.folder / "configs" / "metadata.json").read_text())
    assert meta["performance"]["validation"]["best_val_mean_dice"] == pytest.approx(0.52)
    assert meta["training_run"]["mlflow_run_id"] == run_id
    card = (result.folder / "docs" / "README.md").read_text()
    assert "best_val_mean_dice | 0.5200" in card and run_id in card and "learning_curves.png" in card
    assert (result.folder / "docs" / "learning_curves.png").is_file()
    assert "isic phantoms (12 images)" in card


def test_package_from_a_registered_model_uses_the_run_that_logged_it(monkeypatch, tmp_path, capsys):
    """``--model models:/NAME/VERSION`` resolves through the registry (medseg.tracking) to its training run."""
    import types

    import medseg.sharing.package as package_module
    import medseg.tracking as tracking
    from medseg.cli import main

    seen = {}

    def resolve(uri, tracking_uri, work):
        seen["uri"] = uri
        return tmp_path / "model.pt", types.SimpleNamespace(run_id="abc123")

    def fake_package(bundle, run, out, **kwargs):
        seen["run"] = run
        return types.SimpleNamespace(version="0.1.1", folder=tmp_path / "f", zip=tmp_path / "f.zip")

    monkeypatch.setattr(tracking, "resolve_model_checkpoint", resolve)
    monkeypatch.setattr(package_module, "package", fake_package)
    assert main(["package", "--bundle", "isic_unet", "--model", "models:/lesions/3", "--out", str(tmp_path)]) == 0
    assert seen == {"uri": "models:/lesions/3", "run": "abc123"}
    assert "logged by run abc123" in capsys.readouterr().out
