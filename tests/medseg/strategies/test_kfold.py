"""``medseg kfold``: one model per fold, best single model and mean ensemble side by side in MLflow."""

from __future__ import annotations

import json

import pytest

from tests.medseg.strategies.conftest import children_of, run_command, runs_of

pytestmark = pytest.mark.slow


def test_one_model_per_fold_and_an_ensemble(unet_bundle, client, tmp_path, capsys):
    out = tmp_path / "kfold"
    assert run_command("kfold", ["--bundle", str(unet_bundle), "--out", str(out)]) == 0
    assert sorted(p.parent.name for p in out.glob("fold*/model.pt")) == ["fold0", "fold1", "fold2"]
    fold1 = json.loads((out / "fold1" / "datalist.json").read_text())
    assert {i["fold"] for i in fold1["validation"]} == {1} and 1 not in {i["fold"] for i in fold1["training"]}
    summary = json.loads((out / "kfold_summary.json").read_text())
    assert set(summary["test"]) == {"fold0", "fold1", "fold2", "ensemble"}
    assert summary["best_fold"] == max(summary["validation"], key=summary["validation"].get)
    (parent,) = [r for r in runs_of(client) if r.data.tags.get("medseg.strategy") == "kfold"]
    metrics = parent.data.metrics
    assert metrics["test_mean_dice_ensemble"] == pytest.approx(summary["test"]["ensemble"])
    assert metrics["test_mean_dice_best_single"] == pytest.approx(summary["test"][summary["best_fold"]])
    children = children_of(client, parent.info.run_id)
    assert sorted(c.data.params["fold"] for c in children) == ["0", "1", "2"]
    assert all("val/mean_dice" in c.data.metrics and "test_mean_dice" in c.data.metrics for c in children)
    assert "ensemble" in capsys.readouterr().out


def test_fold_the_datalist_lacks(unet_bundle, tmp_path, capsys):
    out = tmp_path / "kfold"
    assert run_command("kfold", ["--bundle", str(unet_bundle), "--folds", "0", "7", "--out", str(out)]) == 2
    assert "has no fold [7] (its folds: [0, 1, 2])" in capsys.readouterr().err
    assert not out.exists()
