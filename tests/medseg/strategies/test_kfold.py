"""``medseg kfold``: one model per fold, best single model and mean ensemble side by side in MLflow."""

from __future__ import annotations

import json

import pytest
import torch

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
    printed = capsys.readouterr().out
    assert "ensemble" in printed
    # the ensemble's post-processing, chosen on every training item once, each predicted by the fold that held it out
    decision_file = out / "postprocessing.json"
    assert summary["postprocessing"] == str(decision_file)
    decision = json.loads(decision_file.read_text())
    held_out = [json.loads((out / f"fold{k}" / "datalist.json").read_text())["validation"] for k in range(3)]
    assert decision["cases"] == sum(len(items) for items in held_out) and set(decision["classes"]) == {"1"}
    assert metrics["oof_mean_dice"] == pytest.approx(decision["scores"]["before"]["mean_dice"])
    assert metrics["oof_mean_dice_postprocessed"] == pytest.approx(decision["scores"]["after"]["mean_dice"])
    assert "postprocessing.json" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert f"chosen on {decision['cases']} out-of-fold validation cases" in printed


def test_scores_apply_each_models_decision():
    """A decision given for a model changes its label map before the Dice, as the packaged model's would."""
    from medseg.strategies.kfold import _postprocessing

    logits = torch.full((2, 16, 16), -1.0)
    logits[1, 2:8, 2:8] = 1.0  # the large region
    logits[1, 12:14, 12:14] = 1.0  # a stray one, not in the label
    label = torch.zeros(1, 16, 16)
    label[0, 2:8, 2:8] = 1
    keep_largest = {"classes": {"1": {"largest_component": True, "fill_holes": False}}}
    plain = _postprocessing(["pred"], 2, False)({"pred": logits.clone(), "label": label.clone()})
    kept = _postprocessing(["pred"], 2, False, keep_largest)({"pred": logits.clone(), "label": label.clone()})
    assert plain["pred"].shape == kept["pred"].shape == (2, 16, 16)  # one-hot for the Dice
    assert plain["pred"][1, 12, 12] == 1 and kept["pred"][1, 12, 12] == 0
    assert torch.equal(kept["pred"][1], kept["label"][1])


def test_fold_the_datalist_lacks(unet_bundle, tmp_path, capsys):
    out = tmp_path / "kfold"
    assert run_command("kfold", ["--bundle", str(unet_bundle), "--folds", "0", "7", "--out", str(out)]) == 2
    assert "has no fold [7] (its folds: [0, 1, 2])" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(("command", "extra"), [("kfold", []), ("sweep", ["--grid", "seed=[1,2]"])])
def test_train_on_validation_is_refused_where_runs_are_compared(dataset, tmp_path, capsys, command, extra):
    # kfold validates (and scores) each fold model on its held-out fold: training on it would make those scores
    # training scores; a sweep ranks its runs by them
    out = tmp_path / command
    argv = ["--bundle", "cardiac_unet", "--dataset_dir", str(dataset), "--set", "train_on_validation=true",
            "--out", str(out), *extra]
    assert run_command(command, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train_on_validation true trains on the validation cases" in err[0], err
    assert not out.exists()
