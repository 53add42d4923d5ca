"""``import medseg``: each verb of the Python API on tiny phantoms, as a notebook would call it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import medseg
from medseg.bundle import BundleInputError
from tests.bundles.conftest import TINY

SMALL = {k: v for k, v in TINY.items() if k != "max_epochs"}


def test_import_is_cheap():
    code = "import sys, medseg; print(sorted(m for m in ('torch', 'monai', 'mlflow') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
    assert {"train", "evaluate", "predict", "plan", "load_model"} <= set(dir(medseg))
    assert all(getattr(medseg, verb).__doc__ for verb in ("train", "evaluate", "predict", "plan", "load_model"))


def test_train_then_load_model(phantom_data, tmp_path, caplog):
    import logging

    import torch

    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="medseg.train"):
        result = medseg.train("cardiac_unet", phantom_data("cardiac-png"), max_epochs=1, output_dir=out,
                              overrides=SMALL, logging_file=False)
    console = [r.getMessage() for r in caplog.records if r.name == "medseg.train"]
    assert len([line for line in console if line.startswith("epoch 1/1  loss ")]) == 1
    assert "val_mean_dice" in console[0] and " val_dice " not in console[0]  # no duplicate of the mean
    summary = "\n".join(console[1:])
    assert "training finished: 1 epoch(s)" in summary and "best val_mean_dice" in summary and "at epoch 1" in summary
    assert f"checkpoint: {out / 'model.pt'}" in summary
    assert "MLflow: run " in summary and "open: mlflow ui --backend-store-uri sqlite:" in summary
    assert result["output_dir"] == str(out) and result["checkpoint"] == str(out / "model.pt")
    assert result["key_metric"] == "val_mean_dice" and result["best_metric_epoch"] == 1
    assert 0.0 <= result["best_metric"] <= 1.0
    model = medseg.load_model("cardiac_unet", result["checkpoint"])
    saved = torch.load(result["checkpoint"], weights_only=True)
    saved = saved.get("model", saved)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    with torch.no_grad():
        assert model(torch.rand(1, 1, 32, 32)).shape == (1, 4, 32, 32)


def test_train_refuses_an_unknown_override_before_anything_runs(phantom_data, tmp_path):
    with pytest.raises(BundleInputError, match="no id 'max_epoch'.*did you mean max_epochs"):
        medseg.train("cardiac_unet", phantom_data("cardiac-png"), output_dir=tmp_path / "run",
                     overrides={"max_epoch": 1}, logging_file=False)
    assert not (tmp_path / "run").exists()


def test_plan_writes_and_returns_the_plan(phantom_data, tmp_path):
    plan = medseg.plan("cardiac_unet", phantom_data("cardiac-png"), "2m", out=tmp_path / "plans.json")
    written = json.loads((tmp_path / "plans.json").read_text())
    assert plan["plan"]["path"] == str(tmp_path / "plans.json")
    assert written["spatial_size"] == plan["spatial_size"] and written["max_epochs"] == plan["max_epochs"] >= 1


def test_evaluate_scores_perfect_predictions(phantom_data, tmp_path):
    data = phantom_data("cardiac-png")
    datalist = json.loads((data / "datalist.json").read_text())
    pred = tmp_path / "pred"
    pred.mkdir()
    for item in datalist["validation"]:
        shutil.copy(data / item["label"], pred / f"{item['case_id']}.png")
    summary = medseg.evaluate(pred, data / "datalist.json", tmp_path / "report", surface_distances="no", examples=0)
    assert summary["n_cases"] == len(datalist["validation"])
    assert summary["metrics"]["mean_dice"] == pytest.approx(1.0)
    with pytest.raises(TypeError, match="unknown argument"):
        medseg.evaluate(pred, data / "datalist.json", tmp_path / "r2", iou_treshold=0.5)


def test_predict_with_a_packaged_bundle(tmp_path):
    from tests.medseg.sharing.bundle_factory import make_bundle
    from tests.medseg.sharing.conftest import make_package, write_rgb_images

    package = make_package(tmp_path / "dist", make_bundle(tmp_path / "bundle"))
    write_rgb_images(tmp_path / "in", sizes=((40, 50), (37, 61)))
    result = medseg.predict(package, tmp_path / "in", tmp_path / "out", device="cpu")
    from PIL import Image

    masks = sorted((tmp_path / "out").glob("*_mask.png"))
    assert len(masks) == 2 and len({r["input"] for r in result.rows}) == 2
    assert np.asarray(Image.open(masks[0])).shape == (40, 50)
