"""Bad input ends a bundle run with one line naming the file and the fix, and writes no checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medseg.bundle import BundleInputError
from tests.bundles.conftest import REPO_ROOT, TINY, config_files, make_workflow, run_workflow


def _copy_with_bad_label(dataset, tmp_path, value=7):
    """A copy of a converted dataset whose second training label has a value beyond the classes."""
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    datalist = json.loads((bad / "datalist.json").read_text())
    label = bad / datalist["training"][1]["label"]
    pixels = np.array(Image.open(label))
    pixels[:2, :2] = value
    Image.fromarray(pixels).save(label)
    return bad, label


def test_missing_datalist(tmp_path):
    with pytest.raises(BundleInputError, match="datalist not found"):
        run_workflow("cardiac_unet", ("train",), dataset_dir=str(tmp_path / "nowhere"), output_dir=str(tmp_path),
                     **TINY)


def test_datalist_without_training_section(phantom_data, tmp_path):
    datalist = json.loads((phantom_data("cardiac-png") / "datalist.json").read_text())
    del datalist["training"]
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(datalist))
    with pytest.raises(BundleInputError, match=r"datalist.json: has no 'training' section"):
        run_workflow("cardiac_unet", ("train",), dataset_dir=str(tmp_path), output_dir=str(tmp_path), **TINY)


def test_label_beyond_classes_cli_last_line(phantom_data, tmp_path):
    bad, label = _copy_with_bad_label(phantom_data("cardiac-png"), tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_files("cardiac_unet", "train")[0],
           "--dataset_dir", str(bad), "--output_dir", str(out), "--max_epochs", "1", "--num_workers", "0",
           "--spatial_size", "[32,32]"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(str(label)) and "label values 7 are outside 0..3" in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not list(out.glob("*.pt")) if out.exists() else True


def test_label_beyond_classes_in_dataloader_worker(phantom_data, tmp_path):
    # not cached: the check runs in a DataLoader worker, which re-raises it as text
    bad, label = _copy_with_bad_label(phantom_data("cardiac-png"), tmp_path)
    out = tmp_path / "out"
    with pytest.raises(BundleInputError, match=f"{label}: label values 7"):
        run_workflow("cardiac_unet", ("train",), dataset_dir=str(bad), output_dir=str(out),
                     **{**TINY, "num_workers": 1, "cache_rate": 0.0})
    assert not list(out.glob("*.pt")) if out.exists() else True


def test_image_channels_do_not_match_network(phantom_data, tmp_path):
    # greyscale cardiac slices given to an RGB skin bundle
    expected = r"\.png: image has 1 channel\(s\) \(greyscale\) but the network takes 3"
    with pytest.raises(BundleInputError, match=expected):
        run_workflow("isic_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")), output_dir=str(tmp_path),
                     **TINY)


def test_checkpoint_from_another_network(phantom_data, tmp_path):
    import torch

    cardiac = make_workflow("cardiac_unet", ("inference",), "infer", dataset_dir=str(tmp_path), output_dir="/x")
    ckpt = tmp_path / "cardiac.pt"
    torch.save(cardiac.parser.get_parsed_content("network_def").state_dict(), ckpt)
    with pytest.raises(BundleInputError, match=r"cardiac.pt: checkpoint does not fit bundle 'isic_unet'.*UNet"):
        run_workflow("isic_unet", ("train", "evaluate"), "infer", dataset_dir=str(phantom_data("isic")),
                     output_dir=str(tmp_path / "eval"), ckpt_path=str(ckpt), **TINY)
    assert not (tmp_path / "eval" / "metrics.csv").exists()


def test_missing_checkpoint(phantom_data, tmp_path):
    images = phantom_data("isic") / "images"
    with pytest.raises(BundleInputError, match="checkpoint not found"):
        run_workflow("isic_unet", ("inference",), "infer", dataset_dir=str(images), output_dir=str(tmp_path),
                     ckpt_path=str(tmp_path / "none.pt"), spatial_size=[32, 32])


def test_inference_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(BundleInputError, match="no image found"):
        run_workflow("isic_unet", ("inference",), "infer", dataset_dir=str(tmp_path), output_dir=str(tmp_path / "o"))


def test_spatial_size_not_a_multiple_of_the_network_stride(phantom_data, tmp_path):
    with pytest.raises(BundleInputError, match=r"spatial_size \[40, 40\] must be multiples of 16 .*\[32, 32\]"):
        run_workflow("cardiac_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")),
                     output_dir=str(tmp_path), **{**TINY, "spatial_size": [40, 40]})


# ---------------------------------------------------------------- command line, config files and settings


def _monai_run(bundle: str, names: tuple[str, ...], **overrides):
    """``python -m monai.bundle run`` in this process (the path where medseg's initialize checks see overrides)."""
    from monai.bundle import run

    files = config_files(bundle, *names)
    run(config_file=files, meta_file=str(REPO_ROOT / "bundles" / bundle / "configs" / "metadata.json"),
        logging_file=False, **overrides)


def test_unknown_override_id_names_the_closest(phantom_data, tmp_path):
    with pytest.raises(BundleInputError, match=r"--max_epoch: .*no id 'max_epoch'.*did you mean max_epochs\?") as err:
        _monai_run("cardiac_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")),
                   output_dir=str(tmp_path / "out"), max_epoch=1)
    assert err.value.code == 2
    assert not (tmp_path / "out").exists()


def test_resume_without_its_override_file_says_how(phantom_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pt").write_bytes(b"the interrupted run's best model")
    with pytest.raises(BundleInputError, match=r"--resume: .*strategies/resume\.json: add it, --config_file"):
        _monai_run("cardiac_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")), output_dir=str(out),
                   resume=True)
    assert (out / "model.pt").read_bytes() == b"the interrupted run's best model"


def test_new_argument_of_a_component_is_accepted():
    from monai.bundle import ConfigParser

    from medseg.bundle.overrides import is_known

    parser = ConfigParser()
    parser.read_config(config_files("cardiac_unet", "train"))
    assert is_known(parser, "optimizer#betas") and is_known(parser, "max_epochs")
    assert not is_known(parser, "max_epoch") and not is_known(parser, "network#no_such")


@pytest.mark.parametrize("setting", [{"max_epochs": 0}, {"batch_size": -2}, {"val_interval": 1.5},
                                     {"learning_rate": -0.1}, {"learning_rate": float("nan")},
                                     {"keep_checkpoint": "final"}, {"weight_average_momentum": 1.5}])
def test_settings_out_of_range_stop_before_any_work(phantom_data, tmp_path, setting):
    name = next(iter(setting))
    expected = "must be (a positive|a number of at least 0|best|a number between 0 and 1)"
    with pytest.raises(BundleInputError, match=f"--{name} .*{expected}"):
        make_workflow("cardiac_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")),
                      output_dir=str(tmp_path / "out"), **{**TINY, **setting})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("setting", "expected"), [
    ({"train_on_validation": "yes"}, "--train_on_validation 'yes': must be true or false"),
    ({"train_on_validation": True, "keep_checkpoint": "best"},
     "--train_on_validation true trains on the validation cases, .*--keep_checkpoint last"),
])
def test_train_on_validation_settings_stop_before_any_work(phantom_data, tmp_path, setting, expected):
    with pytest.raises(BundleInputError, match=expected):
        make_workflow("cardiac_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")),
                      output_dir=str(tmp_path / "out"), **{**TINY, **setting})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("setting", "expected"), [
    ({"progressive_scales": [0.5, 0.9]}, r"--progressive_scales \[0.5, 0.9\]: scales must rise .* end at 1.0"),
    ({"progressive_scales": 0.5}, "--progressive_scales 0.5: give two or more scales"),
    ({"progressive_scales": [0.5, 1.0], "progressive_shares": [0.9, 0.9]}, r"--progressive_shares \[0.9, 0.9\]: give"),
    ({"progressive_shares": [0.5, 0.5]}, r"--progressive_shares \[0.5, 0.5\]: set --progressive_scales too"),
])
def test_progressive_settings_stop_before_any_work(phantom_data, tmp_path, setting, expected):
    with pytest.raises(BundleInputError, match=expected):
        make_workflow("cardiac_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")),
                      output_dir=str(tmp_path / "out"), **{**TINY, **setting})
    assert not (tmp_path / "out").exists()


def test_datalist_file_missing_from_disk(phantom_data, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(phantom_data("cardiac-png"), bad)
    datalist = json.loads((bad / "datalist.json").read_text())
    gone = bad / datalist["training"][0]["image"]
    gone.unlink()
    with pytest.raises(BundleInputError, match=rf"datalist.json: its 'training' section lists {gone}, not on disk"):
        run_workflow("cardiac_unet", ("train",), dataset_dir=str(bad), output_dir=str(tmp_path / "out"), **TINY)


def test_config_file_problems_name_the_file(tmp_path):
    from medseg.bundle import check_config_files

    with pytest.raises(BundleInputError, match=r"--config_file .*nope.json: no such file"):
        check_config_files(str(tmp_path / "nope.json"))
    broken = tmp_path / "train.json"
    broken.write_text('{"max_epochs": 5,}')
    with pytest.raises(BundleInputError, match=rf"{broken}: not a valid config file \(.*line 1 column"):
        check_config_files([str(broken)])
    evaluate = config_files("cardiac_unet", "evaluate")[0]
    with pytest.raises(BundleInputError, match=r"evaluate.json: an override file, not a whole config.*train.json"):
        check_config_files(evaluate)
    both = config_files("cardiac_unet", "train", "evaluate")
    assert check_config_files(str(both)) == both  # MONAI's "['a','b']" text


def test_medseg_run_cli_one_line_exit_2(tmp_path, capsys):
    from medseg.cli import main

    evaluate = config_files("cardiac_unet", "evaluate")[0]
    assert main(["run", "--config_file", evaluate, "--dataset_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "an override file, not a whole config" in err[0]


def test_monai_cli_unknown_override_last_line(phantom_data, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_files("cardiac_unet", "train")[0],
           "--dataset_dir", str(phantom_data("cardiac-png")), "--output_dir", str(out), "--max_epoch", "1"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("--max_epoch: the bundle's config has no id 'max_epoch'")
    assert "Traceback" not in proc.stderr and not out.exists()


# ---------------------------------------------------------------- Ctrl-C and checkpoints


def test_ctrl_c_in_training_is_one_line_and_keeps_outputs(phantom_data, tmp_path):
    from ignite.engine import Events

    from medseg.bundle import Interrupted

    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pt").write_bytes(b"an earlier best model")
    workflow = make_workflow("cardiac_unet", ("train",), dataset_dir=str(phantom_data("cardiac-png")),
                             output_dir=str(out), **TINY)
    trainer = workflow.parser.get_parsed_content("train#trainer")

    def press_ctrl_c(engine):
        raise KeyboardInterrupt

    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=1), press_ctrl_c)
    with pytest.raises(Interrupted) as stop:
        workflow.run()
    assert isinstance(stop.value, KeyboardInterrupt) and "interrupted (Ctrl-C)" in stop.value.message
    assert stop.value.code == 130
    assert (out / "model.pt").read_bytes() == b"an earlier best model"
    assert not (out / "model_final.pt").exists()
    from mlflow import MlflowClient

    from medseg.tracking import resolve_tracking_uri

    client = MlflowClient(resolve_tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    latest = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=1)
    assert latest[0].info.status == "KILLED"


class _RunsCode:
    def __reduce__(self):
        return (print, ("this checkpoint runs code when loaded",))


@pytest.mark.parametrize("content", ["garbage", "malicious"])
def test_unreadable_or_malicious_checkpoint(phantom_data, tmp_path, content):
    import torch

    ckpt = tmp_path / "model.pt"
    if content == "garbage":
        ckpt.write_bytes(b"\x00not a checkpoint" * 10)
    else:
        torch.save({"model": _RunsCode()}, ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(BundleInputError, match=rf"{ckpt}"):
        run_workflow("cardiac_unet", ("train", "evaluate"), "infer", dataset_dir=str(phantom_data("cardiac-png")),
                     output_dir=str(tmp_path / "eval"), ckpt_path=str(ckpt), **TINY)
    assert ckpt.read_bytes() == before
    assert not (tmp_path / "eval" / "metrics.csv").exists()
