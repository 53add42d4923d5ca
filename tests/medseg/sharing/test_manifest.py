"""manifest.json: the registry's typed checks, the schema, derivation from bundle configs (all six repository
bundles, and refusals of what cannot be expressed), the k-fold ensemble, TTA, post-processing and the runtime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.sharing.errors import SharingError
from medseg.sharing.manifest import derive_from_config, read_manifest, validate_manifest
from medseg.sharing.registry import ArgumentError, build_network, check_network, check_step

REPO = Path(__file__).resolve().parents[3]
LAMBDA = {"_target_": "Lambdad", "keys": "image", "func": "$lambda x: x"}
REPO_BUNDLES = sorted(p.parents[1] for p in (REPO / "bundles").glob("*/configs/inference.json"))


@pytest.mark.parametrize(
    "name, arguments, expected",
    [
        ("monai.UNet", {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "channels": [4, 8]}, "missing"),
        (
            "monai.UNet",
            {"spatial_dims": 2, "in_channels": "1", "out_channels": 2, "channels": [4], "strides": [2]},
            "'in_channels'",
        ),  # fmt: skip
        (
            "monai.UNet",
            {
                "spatial_dims": 2,
                "in_channels": 1,
                "out_channels": 2,
                "channels": [4, 8],
                "strides": [2],
                "norm": "$eval('x')",
            },
            "'norm'",
        ),  # fmt: skip
        (
            "monai.UNet",
            {
                "spatial_dims": 2,
                "in_channels": 1,
                "out_channels": 2,
                "channels": [4, 8],
                "strides": [2],
                "_target_": "os.system",
            },
            "unknown argument",
        ),  # fmt: skip
        (
            "monai.FlexibleUNet",
            {"in_channels": 3, "out_channels": 2, "backbone": "tv_resnet34", "pretrained": True},
            "'pretrained' must be False",
        ),  # fmt: skip
        ("monai.FlexibleUNet", {"in_channels": 3, "out_channels": 2, "backbone": "../../evil"}, "registered backbone"),
        ("os.system", {}, "not registered"),
    ],
)
def test_registry_refuses_bad_networks(name, arguments, expected):
    with pytest.raises(ArgumentError, match=expected):
        check_network(name, arguments)


def test_registry_builds_every_repository_network():
    for bundle in REPO_BUNDLES:
        config = json.loads((bundle / "configs" / "inference.json").read_text())
        metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
        derived = derive_from_config({**config, "bundle_root": "."}, metadata, bundle, bundle / "inference.json")
        network = build_network(derived["network"]["name"], derived["network"]["arguments"])
        assert isinstance(network, torch.nn.Module)
        assert derived["labels"] == metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
        names = [s["name"] for s in derived["preprocessing"]]
        # intensity statistics are taken on the resized image, as the bundles' transforms do
        assert names[0 if names[0] != "squeeze_slice" else 1] == "resize", names
        resize = derived["preprocessing"][names.index("resize")]
        assert resize["params"]["anti_aliasing_filter"] == "torch"


def test_resize_builds_the_recorded_anti_aliasing_filter():
    from monai.transforms import Resized

    from medseg.sharing.registry import build_preprocessing
    from medseg.transforms import AntialiasedResized

    def built(params: dict) -> type:
        return type(build_preprocessing([{"name": "resize", "params": params}]).transforms[0])

    # a package made before the filter was recorded keeps MONAI's Gaussian (what its network was trained on)
    resize = {"spatial_size": [32, 32], "anti_aliasing": True}
    assert built(resize) is Resized
    assert built({**resize, "anti_aliasing_filter": "gaussian"}) is Resized
    assert built({**resize, "anti_aliasing_filter": "torch"}) is AntialiasedResized


def test_steps_are_typed():
    assert check_step(0, {"name": "resize", "params": {"spatial_size": [32, 32]}}).name == "resize"
    for step, expected in (
        ({"name": "resize", "params": {}}, "missing argument"),
        ({"name": "resize", "params": {"spatial_size": "$[32]"}}, "'spatial_size'"),
        ({"name": "resize", "params": {"spatial_size": [32], "anti_aliasing_filter": "lanczos"}}, "gaussian, torch"),
        ({"name": "Lambdad", "params": {}}, "not registered"),
        ({"name": "z_score", "params": {"func": "x"}}, "unknown argument"),
        ({"name": "scale_intensity_range_percentiles", "params": {"lower": 1, "upper": 150, "b_min": 0, "b_max": 1}},
         r"'upper'.*a number in \[0, 100\]"),
    ):
        with pytest.raises(ArgumentError, match=expected):
            check_step(0, step)


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda c: c["preprocessing"]["transforms"].insert(
                2, {"_target_": "Lambdad", "keys": "image", "func": "$lambda x: x"}
            ),
            "transforms::2 (Lambdad)",
        ),  # fmt: skip
        (lambda c: c["network_def"].update(_target_="SwinUNETR"), "'SwinUNETR' has no registered medseg name"),
        (
            lambda c: c["postprocessing"]["transforms"].insert(
                1, {"_target_": "Lambdad", "keys": "pred", "func": "$lambda x: x"}
            ),
            "cannot be expressed",
        ),  # fmt: skip
        (
            lambda c: c.update(inferer={"_target_": "SlidingWindowInferer", "roi_size": [8, 8], "sw_batch_size": 1}),
            "SlidingWindowInferer",
        ),  # fmt: skip
    ],
)
def test_derive_refuses_what_it_cannot_express(rgb_bundle, change, expected):
    config = json.loads((rgb_bundle / "configs" / "inference.json").read_text())
    change(config)
    metadata = json.loads((rgb_bundle / "configs" / "metadata.json").read_text())
    with pytest.raises(SharingError, match="inference.json") as info:
        derive_from_config(config, metadata, rgb_bundle, rgb_bundle / "configs" / "inference.json")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_package_refuses_inexpressible_bundle_and_leaves_nothing(rgb_bundle, tmp_path):
    from medseg.sharing.package import package

    src = Path(shutil.copytree(rgb_bundle, tmp_path / "src"))
    path = src / "configs" / "inference.json"
    config = json.loads(path.read_text())
    config["preprocessing"]["transforms"].insert(2, {"_target_": "RandFlipd", "keys": "image", "prob": 0.5})
    path.write_text(json.dumps(config))
    with pytest.raises(SharingError, match="RandFlipd"):
        package(src, str(src / "models" / "model.pt"), tmp_path / "dist", schema=src / "configs" / "meta_schema.json")
    assert list((tmp_path / "dist").iterdir()) == []


def test_packaged_manifest_is_valid_and_hashes_every_file(rgb_package):
    manifest = read_manifest(rgb_package)
    files = {p.relative_to(rgb_package).as_posix() for p in rgb_package.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json", "manifest.sig"}
    assert manifest["weights"] == [{"file": "models/model.safetensors", "format": "safetensors", "name": "model"}]
    broken = json.loads(json.dumps(manifest))
    broken["labels"] = {"0": "background", "1": "a", "2": "b"}
    with pytest.raises(SharingError, match="do not match out_channels"):
        validate_manifest(broken)


def test_manifest_and_monai_bundle_give_the_same_masks(rgb_bundle, tmp_path):
    from PIL import Image

    from medseg.sharing.predict import predict
    from tests.medseg.sharing.conftest import make_package, write_rgb_images

    # fp32 on both runners (amp=False reaches the shipped inference.json too): on a CPU with bf16 the two runners'
    # different batching rounds differently, and a random network's near-tied logits flip a few pixels
    fp32_package = make_package(tmp_path / "package", rgb_bundle, amp=False)
    assert read_manifest(fp32_package)["inference"]["amp"] is False
    write_rgb_images(tmp_path / "in", sizes=((40, 50), (37, 61), (64, 30)))
    predict(fp32_package, tmp_path / "in", tmp_path / "manifest")
    predict(fp32_package, tmp_path / "in", tmp_path / "monai", trust=True)
    for path in sorted((tmp_path / "manifest").glob("*_mask.png")):
        np.testing.assert_array_equal(
            np.asarray(Image.open(path)), np.asarray(Image.open(tmp_path / "monai" / path.name))
        )


def _kfold_summary(bundle: Path, folder: Path, decision: dict | None = None) -> tuple[Path, dict]:
    """Three fold checkpoints (random weights) and the kfold_summary.json ``medseg kfold`` would write; with
    ``decision``, the ensemble's post-processing file it names."""
    from monai.networks.nets import UNet

    config = json.loads((bundle / "configs" / "inference.json").read_text())
    args = {k: v for k, v in config["network_def"].items() if k != "_target_"}
    checkpoints = {}
    for fold in range(3):
        torch.manual_seed(fold + 10)
        checkpoints[f"fold{fold}"] = str(folder / f"fold{fold}.pt")
        torch.save({"model": UNet(**args).state_dict()}, checkpoints[f"fold{fold}"])
    summary = folder / "kfold_summary.json"
    scores = {"fold0": 0.70, "fold1": 0.80, "fold2": 0.75}
    record = {"checkpoints": checkpoints, "validation": scores, "best_fold": "fold1"}
    if decision is not None:
        record["postprocessing"] = str(folder / "postprocessing.json")
        (folder / "postprocessing.json").write_text(json.dumps(decision))
    summary.write_text(json.dumps(record))
    return summary, checkpoints


POOLED = {"classes": {"1": {"largest_component": True, "fill_holes": True}}}
BEST_FOLDS_OWN = {"classes": {"1": {"largest_component": False, "fill_holes": True}}}


def test_kfold_ensemble_ships_the_out_of_fold_decision_and_the_best_fold_its_own(rgb_bundle, tmp_path):
    from medseg.sharing.package import package

    summary, _ = _kfold_summary(rgb_bundle, tmp_path, decision=POOLED)
    (tmp_path / "fold1.postprocessing.json").write_text(json.dumps(BEST_FOLDS_OWN))  # beside the best fold
    result = package(rgb_bundle, str(summary), tmp_path / "dist", schema=rgb_bundle / "configs" / "meta_schema.json")
    assert read_manifest(result.folder)["postprocessing"]["classes"] == POOLED["classes"]
    # the MONAI bundle form is the best fold alone: its inference.json applies that fold's own decision
    assert json.loads((result.folder / "models" / "postprocessing.json").read_text()) == BEST_FOLDS_OWN
    card = (result.folder / "docs" / "README.md").read_text()
    assert "class 1: largest component, fill holes (chosen on the folds' pooled out-of-fold" in card


def test_kfold_summary_naming_a_missing_decision_is_refused(rgb_bundle, tmp_path):
    from medseg.sharing.package import package

    summary, _ = _kfold_summary(rgb_bundle, tmp_path, decision=POOLED)
    (tmp_path / "postprocessing.json").unlink()
    with pytest.raises(SharingError, match="names files that do not exist .*postprocessing.json"):
        package(rgb_bundle, str(summary), tmp_path / "dist", schema=rgb_bundle / "configs" / "meta_schema.json")
    assert list((tmp_path / "dist").iterdir()) == []  # nothing half-written


def test_other_checkpoints_decision_reaches_the_bundle_form(rgb_bundle, tmp_path):
    """Packaging ``model_final.pt`` ships ``model_final.postprocessing.json`` as ``models/postprocessing.json``, the
    name the bundle form's inference.json looks for beside ``models/model.pt``."""
    from medseg.sharing.package import package

    checkpoint = tmp_path / "run" / "model_final.pt"
    checkpoint.parent.mkdir()
    shutil.copy(rgb_bundle / "models" / "model.pt", checkpoint)
    (tmp_path / "run" / "model_final.postprocessing.json").write_text(json.dumps(BEST_FOLDS_OWN))
    result = package(rgb_bundle, str(checkpoint), tmp_path / "dist", schema=rgb_bundle / "configs" / "meta_schema.json")
    assert json.loads((result.folder / "models" / "postprocessing.json").read_text()) == BEST_FOLDS_OWN
    assert read_manifest(result.folder)["postprocessing"]["classes"] == BEST_FOLDS_OWN["classes"]
    card = (result.folder / "docs" / "README.md").read_text()
    assert "class 1: fill holes (chosen on the validation predictions" in card


@pytest.mark.slow
def test_kfold_parent_mlflow_run_packages_an_ensemble(rgb_bundle, tmp_path):
    import mlflow

    from medseg.sharing.package import package

    summary, _ = _kfold_summary(rgb_bundle, tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("kfold", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment, run_name="tiny-kfold", tags={"medseg.strategy": "kfold"}).info.run_id
    for fold, score in (("fold0", 0.7), ("fold1", 0.8), ("fold2", 0.75)):
        client.log_metric(run_id, f"{fold}_val_mean_dice", score)
    client.log_artifact(run_id, str(summary))
    client.set_terminated(run_id)
    result = package(rgb_bundle, run_id, tmp_path / "dist", schema=rgb_bundle / "configs" / "meta_schema.json",
                     tracking_uri=uri)  # fmt: skip
    manifest = read_manifest(result.folder)
    assert len(manifest["weights"]) == 3 and manifest["training"]["mlflow_run_id"] == run_id
    assert manifest["performance"]["cross_validation"]["mean"] == pytest.approx(0.75)


def test_kfold_summary_packages_an_ensemble(rgb_bundle, tmp_path):
    from medseg.sharing.package import package
    from medseg.sharing.shared_model import load_shared_model

    summary, checkpoints = _kfold_summary(rgb_bundle, tmp_path)
    result = package(rgb_bundle, str(summary), tmp_path / "dist", schema=rgb_bundle / "configs" / "meta_schema.json")
    manifest = read_manifest(result.folder)
    assert [w["file"] for w in manifest["weights"]] == [f"models/fold{k}.safetensors" for k in range(3)]
    assert manifest["ensemble"] == "mean_softmax" and manifest["weights"][1]["validation_score"] == 0.8
    cv = manifest["performance"]["cross_validation"]
    assert cv["mean"] == pytest.approx(0.75) and cv["std"] == pytest.approx(0.05) and cv["n_folds"] == 3
    card = (result.folder / "docs" / "README.md").read_text()
    assert "0.7500 ± 0.0500" in card and "averages the softmax of the 3 fold models" in card
    # models/model.pt (the MONAI bundle) is the best fold
    best = torch.load(checkpoints["fold1"], weights_only=True)["model"]
    packed = torch.load(result.folder / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(best[k], packed[k]) for k in best)
    # the ensemble's probabilities are the mean of the folds'
    model = load_shared_model(result.folder, manifest)
    images = torch.rand(2, 3, 32, 32)
    singles = [
        load_shared_model(result.folder, {**manifest, "weights": [w]}).probabilities(images)
        for w in manifest["weights"]
    ]
    assert torch.allclose(model.probabilities(images), torch.stack(singles).mean(0), atol=1e-6)


def test_tta_averages_the_inverse_of_each_augmentation():
    from medseg.sharing.tta import tta_softmax

    torch.manual_seed(0)
    network = torch.nn.Conv2d(1, 2, 3, padding=1)
    images = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        plain = torch.softmax(network(images), 1)
        assert torch.allclose(tta_softmax(network, images, None), plain)
        flipped = torch.softmax(network(images.flip(3)), 1).flip(3)
        rotated = torch.rot90(torch.softmax(network(torch.rot90(images, 1, (2, 3))), 1), -1, (2, 3))
        expected = (plain + flipped + rotated) / 3
        assert torch.allclose(tta_softmax(network, images, {"flips": [[1]], "rot90": [1]}), expected, atol=1e-6)


def test_postprocessing_decision_per_class():
    from medseg.sharing.postprocess import apply_decision

    label_map = torch.zeros(1, 12, 12, dtype=torch.uint8)
    label_map[0, 1:6, 1:6] = 1
    label_map[0, 3, 3] = 0  # a hole in class 1
    label_map[0, 9:11, 9:11] = 1  # a small second component of class 1
    label_map[0, 8, 1] = 2  # class 2 left alone
    out = apply_decision(label_map.clone(), {"1": {"largest_component": True, "fill_holes": True}})
    assert out[0, 9, 9] == 0 and out[0, 3, 3] == 1 and out[0, 8, 1] == 2
    assert torch.equal(apply_decision(label_map.clone(), {}), label_map)


def test_bf16_only_where_the_cpu_has_it(tmp_path, monkeypatch):
    from medseg.sharing import runtime

    with_flag, without = tmp_path / "with", tmp_path / "without"
    with_flag.write_text("flags\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    without.write_text("flags\t: fpu sse avx2\n")
    assert runtime.cpu_has_bf16(str(with_flag)) and not runtime.cpu_has_bf16(str(without))
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert runtime.autocast_dtype("cpu", amp=True) == torch.bfloat16
    assert runtime.autocast_dtype("cpu", amp=False) is None
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.autocast_dtype("cpu", amp=True) is None
    assert [len(b) for b in runtime.batches(list(range(7)), 3)] == [3, 3, 1]


def test_postprocessing_decision_file_is_checked(rgb_bundle, tmp_path, capsys):
    from medseg import cli

    decision = tmp_path / "decision.json"
    decision.write_text(json.dumps({"classes": {"1": {"largest_component": "yes"}}}))
    args = ["package", "--bundle", str(rgb_bundle), "--run", str(rgb_bundle / "models" / "model.pt"), "--out",
            str(tmp_path / "dist"), "--postprocessing", str(decision)]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "decision.json: at classes/1/largest_component" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "dist").exists()


def test_shared_model_holds_the_weights_and_no_uninitialised_tensor(rgb_package):
    """The network is built on the meta device and takes the file's tensors: every tensor is real and equal."""
    from safetensors.torch import load_file

    from medseg.sharing.shared_model import load_shared_model

    manifest = read_manifest(rgb_package)
    network = load_shared_model(rgb_package, manifest).networks[0]
    saved = load_file(str(rgb_package / manifest["weights"][0]["file"]))
    state = network.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert not any(t.is_meta for t in [*network.parameters(), *network.buffers()])
    reference = build_network(manifest["network"]["name"], manifest["network"]["arguments"])
    reference.load_state_dict(saved)
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(network.eval()(images), reference.eval()(images))


def test_network_with_a_buffer_outside_its_state_dict_is_built_normally(monkeypatch):
    from medseg.sharing import shared_model

    class WithScale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1)
            self.register_buffer("scale", torch.full((1,), 2.0), persistent=False)

        def forward(self, x):
            return self.conv(x) * self.scale

    monkeypatch.setattr("medseg.sharing.registry.build_network", lambda name, arguments: WithScale())
    state = WithScale().state_dict()
    network = shared_model._network_with_weights("with_scale", {}, state)
    assert network.scale.item() == 2.0 and not network.scale.is_meta
    assert torch.equal(network.conv.weight, state["conv.weight"])
    with pytest.raises(RuntimeError, match="Missing key"):
        shared_model._network_with_weights("with_scale", {}, {})


@pytest.mark.parametrize("amp, shipped", [(False, False), (True, "auto")])
def test_no_amp_reaches_the_shipped_inference_config(bundle_copy, tmp_path, amp, shipped):
    from tests.medseg.sharing.conftest import make_package

    path = bundle_copy / "configs" / "inference.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "amp": "auto"}))
    folder = make_package(tmp_path / "dist", bundle_copy, amp=amp)
    assert json.loads((folder / "configs" / "inference.json").read_text())["amp"] == shipped
    assert read_manifest(folder)["inference"]["amp"] is amp
    assert json.loads(path.read_text())["amp"] == "auto"  # the source bundle is untouched
