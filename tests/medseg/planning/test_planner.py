"""medseg plan: fingerprint, choices with reasons, the time budget, and refusing plans that do not fit."""

from __future__ import annotations

import json

import pytest

from medseg.cli import main
from medseg.planning import PlanError, check_plan, fingerprint, make_plan, parse_duration
from medseg.planning.planner import EPOCH_MARGIN
from tests.bundles.conftest import phantom_data  # noqa: F401  (fixture)


def fake_timer(seconds):
    calls = []

    def timer(folder, overrides):
        calls.append(overrides)
        return seconds

    timer.calls = calls
    return timer


def assert_plan_refused(args, text, capsys, tmp_path):
    """``medseg plan ARGS`` exits 2 with one line naming ``text`` on stderr, and writes no plan file."""
    out = tmp_path / "plans.json"
    assert main(["plan", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0]
    assert not out.exists()


def test_fingerprint_measures_the_data(phantom_data):  # noqa: F811
    fp = fingerprint(phantom_data("cardiac-png"))
    assert fp["modality"] == {"0": "MRI"}
    assert fp["image_size"]["median"] == [96, 96]
    assert fp["intensity"]["channels"] == [1] and fp["intensity"]["eight_bit"]
    assert fp["counts"]["training"] > 0 and len(fp["sha256"]) == 64
    assert set(fp["class_fraction"]) == {"0", "1", "2", "3"}


def test_plan_follows_the_data_and_fits_the_budget(phantom_data):  # noqa: F811
    data = phantom_data("cardiac-png")
    timer = fake_timer(0.5)
    plan = make_plan("cardiac_unet", data, "2m", timer=timer)
    counts = fingerprint(data)["counts"]
    n_train, n_val = counts["training"], counts["validation"]
    assert plan["spatial_size"] == [96, 96]
    assert plan["batch_size"] == min(16, n_train)
    assert plan["intensity_transforms"][0]["_target_"] == "ScaleIntensityd"  # 8-bit MRI slices: keep the scaling
    steps = -(-n_train // plan["batch_size"])
    epoch_seconds = 0.5 * steps + 0.5 / plan["batch_size"] * 0.35 * n_val  # timed steps + validation estimate
    assert plan["max_epochs"] == EPOCH_MARGIN * int(120 // epoch_seconds) >= EPOCH_MARGIN
    assert plan["time_limit"] == 120
    assert plan["early_stop_patience"] == max(10, plan["max_epochs"] // EPOCH_MARGIN // 4)  # cardiac: a real plateau
    record = plan["plan"]
    assert record["bundle"] == "cardiac_unet" and record["datalist_sha256"] == fingerprint(data)["sha256"]
    assert set(record["reasons"]) >= {"spatial_size", "batch_size", "intensity_transforms", "max_epochs",
                                      "early_stop_patience"}
    # the timed steps ran with the planned settings
    assert timer.calls[0]["spatial_size"] == [96, 96] and timer.calls[0]["dataset_dir"] == str(data)


def test_dermoscopy_keeps_its_per_image_scaling_and_caps_the_size(phantom_data):  # noqa: F811
    plan = make_plan("isic_unet", phantom_data("isic"), "5m", max_size=32, timer=fake_timer(0.1))
    assert plan["spatial_size"] == [32, 32]  # the cap, a multiple of the UNet's 16
    assert plan["intensity_transforms"][0]["_target_"] == "ScaleIntensityRangePercentilesd"
    assert "per-image percentile scaling of each channel" in plan["plan"]["reasons"]["intensity_transforms"]


@pytest.mark.parametrize("bundle", ["isic_unet", "isic_flexunet_resnet34"])
def test_dermoscopy_trains_to_its_budget(phantom_data, bundle):  # noqa: F811
    # plan_trains_to_budget: a patience of the planned epochs can never end the run before the time limit does
    plan = make_plan(bundle, phantom_data("isic"), "5m", timer=fake_timer(0.1))
    assert plan["early_stop_patience"] == plan["max_epochs"] > 10
    assert "plan_trains_to_budget" in plan["plan"]["reasons"]["early_stop_patience"]
    assert "keep_checkpoint" not in plan  # what ships is still the best validated epoch (model.pt)


def test_budget_shorter_than_one_epoch_is_one_line(phantom_data, capsys, tmp_path):  # noqa: F811
    data = phantom_data("cardiac-png")
    with pytest.raises(PlanError, match="shorter than one epoch"):
        make_plan("cardiac_unet", data, "1s", timer=fake_timer(5.0))
    assert_plan_refused(["--bundle", "cardiac_unet", "--dataset_dir", str(data), "--time_budget", "soon"],
                        "--time_budget 'soon'", capsys, tmp_path)


def test_raw_mri_is_z_scored(phantom_data):  # noqa: F811
    plan = make_plan("cardiac_dynunet", phantom_data("acdc"), "5m", timer=fake_timer(0.1))
    assert plan["intensity_transforms"][0]["_target_"] == "NormalizeIntensityd"
    assert "z-score" in plan["plan"]["reasons"]["intensity_transforms"]


@pytest.mark.parametrize(("text", "seconds"), [("15m", 900), ("90s", 90), ("1h30m", 5400), (45, 45), ("2.5m", 150)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_plan_of_another_bundle_or_dataset_is_refused(phantom_data, tmp_path):  # noqa: F811
    data = phantom_data("cardiac-png")
    plan = make_plan("cardiac_unet", data, "5m", timer=fake_timer(0.1))["plan"]
    check_plan(plan, "cardiac_unet", data / "datalist.json")  # fits
    check_plan(None, "cardiac_unet", data / "datalist.json")  # no plan layered: nothing to check
    with pytest.raises(PlanError, match="made for bundle 'cardiac_unet', not 'cardiac_dynunet'"):
        check_plan(plan, "cardiac_dynunet", data / "datalist.json")
    other = tmp_path / "datalist.json"
    other.write_text(json.dumps({"training": []}))
    with pytest.raises(PlanError, match="its datalist differs"):
        check_plan(plan, "cardiac_unet", other)


def test_wrong_bundle_for_the_data_is_one_line(phantom_data):  # noqa: F811
    with pytest.raises(PlanError, match="4 labels but bundle isic_unet predicts 2 classes"):
        make_plan("isic_unet", phantom_data("cardiac-png"), "5m", timer=fake_timer(0.1))


def pixel_timer(seconds_at, side_at):
    """A clock whose step time grows with the pixels of the planned size, as a real step's does."""
    calls = []

    def timer(folder, overrides):
        calls.append(overrides)
        return seconds_at * (overrides["spatial_size"][0] / side_at) ** 2

    timer.calls = calls
    return timer


def test_short_budget_trains_dermoscopy_smaller_for_more_steps(phantom_data):  # noqa: F811
    data = phantom_data("isic")  # 48 px phantoms: isic_unet plans 48 x 48
    counts = fingerprint(data)["counts"]
    full = make_plan("isic_unet", data, "20m", timer=pixel_timer(0.01, 48))
    assert full["spatial_size"] == [48, 48]  # the budget buys enough steps: full size, timed once

    timer = pixel_timer(2.0, 48)
    plan = make_plan("isic_unet", data, "2m", timer=timer)
    # 2 s steps buy far fewer than 500 steps in 2 minutes; dermoscopy's min_spatial_scale 0.5 allows 24 -> 32 px
    # (a multiple of the UNet's 16)
    assert plan["spatial_size"] == [32, 32]
    assert [c["spatial_size"] for c in timer.calls] == [[48, 48], [32, 32]]  # re-timed at the smaller size
    reason = plan["plan"]["reasons"]["spatial_size"]
    assert "fewer than 500" in reason and "train at 32x32" in reason
    step = 2.0 * (32 / 48) ** 2  # the epochs follow the re-timed step, not the full-size one
    epoch = step * -(-counts["training"] // plan["batch_size"]) + step / plan["batch_size"] * 0.35 * counts[
        "validation"]
    assert plan["max_epochs"] == EPOCH_MARGIN * int(120 // epoch)

    kept = make_plan("isic_unet", data, "2m", timer=pixel_timer(2.0, 48), min_steps=0)
    assert kept["spatial_size"] == [48, 48]  # min_steps 0: the full size whatever the budget


def test_cardiac_keeps_its_size_on_a_short_budget(phantom_data):  # noqa: F811
    # the cardiac bundles' min_spatial_scale is 1: the thin myocardium needs every pixel
    timer = pixel_timer(2.0, 96)
    plan = make_plan("cardiac_unet", phantom_data("cardiac-png"), "2m", timer=timer)
    assert plan["spatial_size"] == [96, 96] and len(timer.calls) == 1


def test_negative_min_steps_is_one_line(phantom_data, capsys, tmp_path):  # noqa: F811
    data = phantom_data("isic")
    with pytest.raises(PlanError, match="--min_steps -1: must be a whole number of 0 or more"):
        make_plan("isic_unet", data, "2m", timer=fake_timer(0.1), min_steps=-1)
    assert_plan_refused(["--bundle", "isic_unet", "--dataset_dir", str(data), "--min_steps", "-1"], "--min_steps -1",
                        capsys, tmp_path)


def _bundle_with(tmp_path, bundle, **settings):
    """A copy of ``bundle`` whose train.json sets ``settings``."""
    import shutil

    from tests.bundles.conftest import BUNDLES_DIR

    copy = tmp_path / bundle
    shutil.copytree(BUNDLES_DIR / bundle, copy)
    train = copy / "configs" / "train.json"
    train.write_text(json.dumps({**json.loads(train.read_text()), **settings}))
    return copy


def test_progressive_scales_plan_the_epochs_that_fit_the_smaller_stages(phantom_data, tmp_path):  # noqa: F811
    # a step costs about its pixels: a half-size stage for half the budget fits 4x its share of full-size epochs,
    # so [0.5, 1.0] with equal shares fits 0.5 * 4 + 0.5 = 2.5x the epochs
    data = phantom_data("cardiac-png")
    plain = make_plan("cardiac_unet", data, "5m", timer=fake_timer(0.1))
    progressive = make_plan(_bundle_with(tmp_path, "cardiac_unet", progressive_scales=[0.5, 1.0]), data, "5m",
                            timer=fake_timer(0.1))
    fitted = plain["max_epochs"] // EPOCH_MARGIN
    assert progressive["max_epochs"] == EPOCH_MARGIN * -(-fitted * 5 // 2)
    assert "progressive_scales [0.5, 1.0]" in progressive["plan"]["reasons"]["max_epochs"]
    assert "2.50x" in progressive["plan"]["reasons"]["max_epochs"]


def test_bad_progressive_scales_stop_the_plan_in_one_line(phantom_data, tmp_path):  # noqa: F811
    bundle = _bundle_with(tmp_path, "cardiac_unet", progressive_scales=[0.5, 0.8])
    from medseg.bundle.errors import BundleInputError

    with pytest.raises(BundleInputError, match=r"^--progressive_scales \[0.5, 0.8\]: scales must rise"):
        make_plan(bundle, phantom_data("cardiac-png"), "5m", timer=fake_timer(0.1))


def test_steps_are_timed_as_the_trainer_runs_them(phantom_data, monkeypatch):  # noqa: F811
    # the timed step goes through the trainer's prepare_batch (channels_last) and inferer (AmpInferer: the bf16
    # autocast on a CPU that has it), as training does; timed around them, a bf16 CPU planned an fp32 step, twice
    # the time, and trained smaller than its budget allowed
    from medseg.planning.planner import WARM_UP_STEPS, time_training
    from medseg.runtime import inferer as inferer_module
    from medseg.runtime import network as network_module
    from medseg.strategies.launch import find_bundle

    calls = {"inferer": 0, "prepare_batch": 0}
    original_infer = inferer_module.AmpInferer.__call__
    original_prepare = network_module.ChannelsLastPrepareBatch.__call__

    def infer(self, inputs, network, *args, **kwargs):
        calls["inferer"] += 1
        return original_infer(self, inputs, network, *args, **kwargs)

    def prepare(self, *args, **kwargs):
        calls["prepare_batch"] += 1
        return original_prepare(self, *args, **kwargs)

    monkeypatch.setattr(inferer_module.AmpInferer, "__call__", infer)
    monkeypatch.setattr(network_module.ChannelsLastPrepareBatch, "__call__", prepare)
    seconds = time_training(find_bundle("cardiac_unet"), {"dataset_dir": str(phantom_data("cardiac-png")),
                                                           "spatial_size": [32, 32], "batch_size": 2}, steps=2)
    assert seconds > 0
    assert calls == {"inferer": WARM_UP_STEPS + 2, "prepare_batch": 1}
