"""Every bundle, the model zoo's way: properties, metadata, train, evaluate, infer, verify and export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from tests.bundles.conftest import BUNDLE_DATA, BUNDLES_DIR, SCHEMA, TINY, config_files, make_workflow, run_workflow

BUNDLES = sorted(BUNDLE_DATA)
FILES = ["configs/metadata.json", "configs/train.json", "configs/evaluate.json", "configs/inference.json",
         "configs/multi_gpu_train.json", "configs/logging.conf", "docs/README.md", "docs/data_license.txt", "LICENSE"]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_layout_and_metadata(bundle):
    from monai.bundle import verify_metadata

    for name in FILES:
        assert (BUNDLES_DIR / bundle / name).is_file(), f"{bundle} lacks {name}"
    # the schema file exists, so verify_metadata reads it instead of downloading
    verify_metadata(meta_file=str(BUNDLES_DIR / bundle / "configs" / "metadata.json"), filepath=str(SCHEMA))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_the_lr_schedule_steps_where_the_bundle_says(bundle):
    """ham10000's warm restarts step every iteration, the others' schedules every epoch; the bundle says so with the
    named setting ``lr_schedule_epoch_level``, not an override of ``train#handlers#<index>`` (an entry inserted
    before it in the base would move the index)."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / bundle / "configs" / "train.json"))
    handlers = parser["train"]["handlers"]
    (index,) = [i for i, h in enumerate(handlers) if h.get("_target_") == "LrScheduleHandler"]
    assert parser.get_parsed_content(f"train#handlers#{index}#epoch_level") is (bundle != "ham10000_flexunet_resnet34")
    assert not any("handlers#" in key for key in parser.get().keys())


@pytest.mark.parametrize("bundle", BUNDLES)
def test_multi_gpu_training_keeps_every_start_up_check(bundle):
    """``multi_gpu_train.json`` replaces ``initialize`` (the process group must start first): every check and the
    runtime line of ``train.json``'s start-up must still be in it, only the seed made per rank."""
    single, multi = (json.loads((BUNDLES_DIR / bundle / "configs" / f"{name}.json").read_text())["initialize"]
                     for name in ("train", "multi_gpu_train"))
    kept = [step for step in single if not step.startswith("$monai.utils.set_determinism")]
    missing = [step for step in kept if step not in multi]
    assert not missing, f"{bundle}/configs/multi_gpu_train.json lacks {missing}"
    assert [step for step in multi if step in kept] == kept, "the checks run in train.json's order"
    assert any(step.startswith("$monai.utils.set_determinism(seed=@seed + dist.get_rank())") for step in multi)


def test_metadata_verification_rejects_missing_channel_def(tmp_path):
    from monai.bundle import verify_metadata

    meta = json.loads((BUNDLES_DIR / "isic_unet" / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]["inputs"]["image"]["channel_def"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="channel_def"):
        verify_metadata(meta_file=str(bad), filepath=str(SCHEMA))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_check_properties(bundle, phantom_data, tmp_path):
    data = phantom_data(BUNDLE_DATA[bundle])
    from monai.bundle import ConfigWorkflow

    for names, kind in ((("train",), "train"), (("inference",), "infer")):
        files = config_files(bundle, *names)
        folder = data if kind == "train" else data / "images"  # inference reads a folder of images
        workflow = ConfigWorkflow(config_file=files if len(files) > 1 else files[0], workflow_type=kind,
                                  meta_file=str(BUNDLES_DIR / bundle / "configs" / "metadata.json"),
                                  dataset_dir=str(folder), output_dir=str(tmp_path), **TINY)
        workflow.initialize()
        assert not workflow.check_properties(), f"{bundle} {names}: missing optional properties"


def _compare_torchscript(bundle, ckpt, tmp_path, size):
    """ckpt_export writes a TorchScript model that gives the eager model's output."""
    from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out

    meta = str(BUNDLES_DIR / bundle / "configs" / "metadata.json")
    infer = config_files(bundle, "inference")[0]
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=infer)
    exported = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(exported), ckpt_file=str(ckpt), meta_file=meta, config_file=infer)
    parser = ConfigParser()
    parser.read_config(infer)
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    net.eval()
    scripted = torch.jit.load(str(exported), map_location="cpu")
    x = torch.rand(1, parser["in_channels"], *size)
    with torch.no_grad():
        np.testing.assert_allclose(scripted(x).numpy(), net(x).numpy(), rtol=1e-4, atol=1e-5)


def _compare_mlflow_model(bundle, ckpt, tracking_uri, log_text):
    """The training run logged its validation loss and an MLflow model (an ExportedProgram) that gives the inference
    network's output with the kept checkpoint."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert "medseg.model_uri" in run.data.tags, f"{bundle}: the training run logged no MLflow model"
    # from the evaluator's val_loss metric (DynUNet: the deep-supervision loss on the single validation output)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [1]
    assert "call not recorded" not in log_text and "loss failed" not in log_text
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        model_uri = run.data.tags["medseg.model_uri"]
        shape = mlflow.models.get_model_info(model_uri).signature.inputs.inputs[0].shape
        logged = mlflow.pytorch.load_model(model_uri)
    parser = ConfigParser()
    parser.read_config(config_files(bundle, "inference")[0])
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    x = torch.rand(1, *shape[1:])
    with torch.no_grad():
        np.testing.assert_allclose(logged(x).numpy(), net.eval()(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
def test_train_evaluate_infer_export(bundle, phantom_data, tmp_path, capsys):
    data = phantom_data(BUNDLE_DATA[bundle])
    models, evals, preds = tmp_path / "models", tmp_path / "eval", tmp_path / "pred"

    # train: best-by-key-metric and last-epoch checkpoints, and the kept one as an MLflow model
    tracking_uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    run_workflow(bundle, ("train",), dataset_dir=str(data), output_dir=str(models), tracking_uri=tracking_uri, **TINY)
    assert (models / "model.pt").is_file() and (models / "model_final.pt").is_file()
    _compare_mlflow_model(bundle, models / "model.pt", tracking_uri, "".join(capsys.readouterr()))
    # each with the post-processing chosen on its own epoch's validation maps
    assert (models / "postprocessing.json").is_file() and (models / "model_final.postprocessing.json").is_file()

    # evaluate (an override over train): metrics file with the key metric
    run_workflow(bundle, ("train", "evaluate"), "infer", dataset_dir=str(data), output_dir=str(evals),
                 ckpt_path=str(models / "model.pt"), spatial_size=TINY["spatial_size"], num_workers=0)
    metrics = dict(line.split(",") for line in (evals / "metrics.csv").read_text().split())
    assert 0.0 <= float(metrics["val_mean_dice"]) <= 1.0 and "val_loss" in metrics

    # inference on a folder of images: one mask per image, at the image's own size and geometry
    from monai.transforms import LoadImage

    from tests.bundles.conftest import testing_images

    images = testing_images(data, tmp_path / "images")
    run_workflow(bundle, ("inference",), "infer", dataset_dir=str(tmp_path / "images"), output_dir=str(preds),
                 ckpt_path=str(models / "model.pt"), spatial_size=TINY["spatial_size"])
    loader = LoadImage(image_only=True)
    for image in images:
        stem = image.name.split(".")[0]
        nifti = image.name.endswith(".nii.gz")
        mask_path = preds / f"{stem}_seg{'.nii.gz' if nifti else '.png'}"
        assert mask_path.is_file(), f"no mask for {image.name}: {sorted(p.name for p in preds.iterdir())}"
        img, mask = loader(image), loader(mask_path)
        assert tuple(mask.shape[:2]) == tuple(img.shape[:2])
        values = set(np.unique(mask.numpy()).astype(int).tolist())
        if bundle.startswith("isic"):
            assert values <= {0, 255}  # binary masks are written 0/255, like ISIC's own
        else:
            assert values <= set(range(8 if bundle.startswith("ham") else 4))
        if nifti:
            import nibabel as nib

            assert nib.load(mask_path).get_data_dtype() == np.uint8
            np.testing.assert_allclose(nib.load(mask_path).affine, nib.load(image).affine, atol=1e-4)
        else:
            from PIL import Image

            assert Image.open(mask_path).mode == "L"

    _compare_torchscript(bundle, models / "model.pt", tmp_path, TINY["spatial_size"])


@pytest.mark.slow
def test_early_stopping_ends_a_run_that_does_not_improve(phantom_data, tmp_path):
    # lr 0 and a min_delta no loss can beat: validation loss never improves, so patience 1 stops at epoch 2
    overrides = {**TINY, "max_epochs": 5, "learning_rate": 0.0, "early_stop_patience": 1,
                 "validate#early_stop#min_delta": 10.0}
    workflow = run_workflow("cardiac_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")),
                            output_dir=str(tmp_path), **overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2 < trainer.state.max_epochs


@pytest.mark.slow
def test_keep_last_checkpoint_ships_the_last_epoch(phantom_data, tmp_path):
    # keep_checkpoint "last" (nnU-Net's choice, an option here): model.pt holds the weights training ended with,
    # the best validated epoch is model_best.pt, and each has the post-processing chosen on its own epoch's maps
    overrides = {**TINY, "max_epochs": 3, "keep_checkpoint": "last"}
    workflow = run_workflow("cardiac_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")),
                            output_dir=str(tmp_path), **overrides)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["model.pt", "model_best.pt"]
    assert (tmp_path / "postprocessing.json").is_file() and (tmp_path / "model_best.postprocessing.json").is_file()
    assert not (tmp_path / "model_final.postprocessing.json").exists()
    trained = workflow.parser.get_parsed_content("network").state_dict()
    kept = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(kept[k], trained[k].cpu()) for k in kept)


@pytest.mark.slow
def test_train_on_validation_trains_on_both_sections_and_keeps_the_last_epoch(phantom_data, tmp_path, capsys):
    # train_on_validation: the final fit on every labelled case; the validation cases join the training data,
    # model.pt is the last epoch (scores on trained-on cases cannot pick one) and the summary says so
    data = phantom_data("cardiac-png")
    datalist = json.loads((data / "datalist.json").read_text())
    workflow = run_workflow("cardiac_unet", ("train",), dataset_dir=str(data), output_dir=str(tmp_path),
                            **{**TINY, "max_epochs": 2, "train_on_validation": True})
    trained_on = {item["image"] for item in workflow.parser.get_parsed_content("train#dataset").data}
    listed = {str(data / item["image"]) for item in datalist["training"] + datalist["validation"]}
    assert trained_on == listed
    assert workflow.parser.get_parsed_content("keep_checkpoint") == "last"
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["model.pt", "model_best.pt"]
    trained = workflow.parser.get_parsed_content("network").state_dict()
    kept = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(kept[k], trained[k].cpu()) for k in kept)
    assert "the validation cases were trained on (train_on_validation)" in capsys.readouterr().out


@pytest.mark.slow
def test_weight_average_is_what_a_run_validates_and_saves(phantom_data, tmp_path, capsys):
    # weight_average_momentum set: validation (the checkpoint and post-processing choices) and both checkpoints use
    # the averaged weights, not the trained network's; DynUNet's deep supervision heads stay out of the kept last
    # epoch too, so the inference network loads it strictly
    overrides = {**TINY, "max_epochs": 2, "keep_checkpoint": "last", "weight_average_momentum": 0.5}
    workflow = run_workflow("cardiac_dynunet", ("train",), dataset_dir=str(phantom_data("acdc")),
                            output_dir=str(tmp_path), **overrides)
    assert "model.pt (the last epoch's weights, averaged over iterations)" in capsys.readouterr().out
    average = workflow.parser.get_parsed_content("weight_average").network
    trained = workflow.parser.get_parsed_content("network")
    assert average is not trained
    assert workflow.parser.get_parsed_content("validate#evaluator").network is average
    kept = torch.load(tmp_path / "model.pt", weights_only=True)
    averaged, trained_state = average.state_dict(), trained.state_dict()
    assert all(torch.equal(kept[k], averaged[k].cpu()) for k in kept)
    assert not all(torch.equal(kept[k], trained_state[k].cpu()) for k in kept)
    parser = ConfigParser()
    parser.read_config(config_files("cardiac_dynunet", "inference")[0])
    parser.get_parsed_content("network_def").load_state_dict(kept)  # strict: no deep supervision heads


@pytest.mark.slow
def test_progressive_scales_train_the_first_stage_smaller_and_validate_at_full_size(phantom_data, tmp_path):
    # progressive_scales [0.5, 1.0] over 2 epochs: epoch 1 trains on 16 px batches, epoch 2 at the 32 px training
    # size, and validation always sees the bundle's own size
    from medseg.networks import size_divisor

    overrides = {**TINY, "max_epochs": 2, "progressive_scales": [0.5, 1.0]}
    workflow = make_workflow("cardiac_unet", ("train",), dataset_dir=str(phantom_data("acdc")),
                             output_dir=str(tmp_path), **overrides)
    network = workflow.parser.get_parsed_content("network")
    assert size_divisor(network) <= 16
    trainer = workflow.parser.get_parsed_content("train#trainer")
    seen = []
    network.register_forward_pre_hook(
        lambda module, args: seen.append((trainer.state.epoch, module.training, tuple(args[0].shape[-2:]))))
    workflow.run()
    workflow.finalize()
    trained = {(epoch, size) for epoch, training, size in seen if training}
    validated = {size for epoch, training, size in seen if not training}
    assert trained == {(1, (16, 16)), (2, (32, 32))}
    assert validated and all(min(size) >= 32 for size in validated)  # the whole slice, resized to the bundle's size
    assert (tmp_path / "model.pt").is_file()


def check_augmented_draws(workflow, label: str, draws: int = 24) -> None:
    """Random draws of the training transforms over the first images give the training size with finite values and a
    label map holding only the bundle's classes (labels resampled by nearest), and some foreground survives."""
    transform = workflow.parser.get_parsed_content("train#preprocessing")
    items = workflow.parser.get_parsed_content("train_datalist")
    classes = set(range(workflow.parser["num_classes"]))
    channels = workflow.parser["in_channels"]
    seen = set()
    for seed in range(draws):
        transform.set_random_state(seed)
        out = transform(dict(items[seed % len(items)]))  # some slices have no foreground
        image, label_map = out["image"], out["label"]
        assert tuple(image.shape) == (channels, *TINY["spatial_size"]), (label, seed, image.shape)
        assert torch.isfinite(torch.as_tensor(image)).all(), (label, seed)
        assert tuple(label_map.shape) == (1, *TINY["spatial_size"]) and label_map.dtype == torch.uint8, (label, seed)
        values = set(torch.unique(torch.as_tensor(label_map)).tolist())
        assert values <= classes, (label, seed, values)
        seen |= values
    assert len(seen) > 1, f"{label}: no foreground survived {draws} augmented draws"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_training_augmentation_keeps_size_intensities_and_labels(bundle, phantom_data, tmp_path):
    """The default training transforms (geometry, noise, blur, contrast) of every bundle."""
    workflow = make_workflow(bundle, ("train",), dataset_dir=str(phantom_data(BUNDLE_DATA[bundle])),
                             output_dir=str(tmp_path), **TINY)
    check_augmented_draws(workflow, bundle)


@pytest.mark.parametrize("bundle", [b for b in BUNDLES if BUNDLE_DATA[b] in ("isic", "ham10000")])
@pytest.mark.parametrize("config", ["train", "inference"])
def test_dermoscopy_scaling_ignores_each_images_gain_offset_and_colour_cast(bundle, config):
    """Each channel's 1st and 99th percentiles of each image become 0 and 1: a darker, lower-contrast copy of an image
    with a colour cast (gain and offset per channel) is scaled to the same values as the original."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config(config_files(bundle, config))
    scale = Compose(parser.get_parsed_content("intensity_transforms"))
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (3, 40, 30)).astype(np.float32)
    image[:, 10:30, 8:22] *= 0.4  # a darker lesion
    gain, offset = np.array([0.6, 0.8, 0.5], np.float32), np.array([30, 10, 60], np.float32)
    cast = image * gain[:, None, None] + offset[:, None, None]
    original, copy = (np.asarray(scale({"image": x})["image"]) for x in (image, cast))
    assert original.min() == 0.0 and original.max() == 1.0
    np.testing.assert_allclose(copy, original, atol=1e-4)
    assert not np.allclose(cast / 255, image / 255, atol=0.05)  # fixed 0-255 scaling would see two different images


# recipe file -> the bundles it is layered on (bundles/recipes/README.md)
RECIPE_BUNDLES = {
    **{f"{bundle}_v0.1.json": [bundle] for bundle in BUNDLES},
    "cardiac_flip_rotate_augmentation.json": ["cardiac_unet", "cardiac_dynunet"],
    "isic_flexunet_resnet34_flip_rotate_augmentation.json": ["isic_flexunet_resnet34"],
    "fp32.json": list(BUNDLES),
}


def test_every_recipe_names_its_bundles():
    files = sorted(p.name for p in (BUNDLES_DIR / "recipes").glob("*.json"))
    assert files == sorted(RECIPE_BUNDLES), "add new recipe files to RECIPE_BUNDLES (and bundles/recipes/README.md)"


@pytest.mark.parametrize(("recipe", "bundle"), [(r, b) for r, bundles in RECIPE_BUNDLES.items() for b in bundles])
def test_recipe_layers_on_its_bundle(recipe, bundle, phantom_data, tmp_path):
    """A recipe after train.json builds the trainer, and its training transforms keep size, values and labels."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(config_file=[*config_files(bundle, "train"), str(BUNDLES_DIR / "recipes" / recipe)],
                              meta_file=str(BUNDLES_DIR / bundle / "configs" / "metadata.json"), workflow_type="train",
                              dataset_dir=str(phantom_data(BUNDLE_DATA[bundle])), output_dir=str(tmp_path), **TINY)
    workflow.initialize()
    assert workflow.parser.get_parsed_content("train#trainer").state.max_epochs == TINY["max_epochs"]
    check_augmented_draws(workflow, f"{bundle} + {recipe}", draws=8)


def test_class_weights_from_stats(phantom_data):
    from medseg.bundle import class_weights_from_stats

    data = phantom_data("cardiac-png")
    weights = class_weights_from_stats(data / "stats.json", 4)
    fractions = json.loads((data / "stats.json").read_text())["class_frequency"]["training"]["fraction"]
    assert len(weights) == 4 and abs(sum(weights) / 4 - 1.0) < 1e-6
    rarest = min(range(4), key=lambda c: fractions.get(str(c), 0) or 1)
    assert weights[rarest] == max(weights) and weights[0] == min(weights)  # background is the most common
    # and the loss takes them from the config
    workflow = make_workflow("cardiac_unet", ("train",), dataset_dir=str(data), output_dir="/tmp/unused",
                             class_weights="$medseg.bundle.class_weights_from_stats(@dataset_dir + '/stats.json', 4)",
                             **TINY)
    loss = workflow.parser.get_parsed_content("loss")
    assert torch.allclose(loss.dice.class_weight.flatten().cpu(), torch.tensor(weights), atol=1e-6)


@pytest.mark.parametrize(("bundle", "architecture"), [("isic_flexunet_resnet34", "resnet34"),
                                                       ("isic_flexunet_mobilenetv2", "mobilenet_v2")])
def test_encoder_weights_load_from_a_local_file(bundle, architecture, phantom_data, tmp_path):
    import torchvision

    reference = getattr(torchvision.models, architecture)(weights=None)
    path = tmp_path / f"{architecture}.pth"
    torch.save(reference.state_dict(), path)
    workflow = make_workflow(bundle, ("train",), dataset_dir=str(phantom_data("isic")), output_dir=str(tmp_path),
                             encoder_weights=str(path), **TINY)
    encoder = workflow.parser.get_parsed_content("network").encoder.state_dict()
    first_conv = "features.0.0.weight" if architecture == "mobilenet_v2" else "conv1.weight"
    loaded = next(v for k, v in encoder.items() if k.endswith(first_conv))
    assert torch.equal(loaded.cpu(), reference.state_dict()[first_conv])
