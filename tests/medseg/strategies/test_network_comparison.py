"""``medseg compare-networks``: two networks, one cross-validation fold, the same short budget, on cardiac phantoms.

The real bundle (``cardiac_unet``) and the registered override file (``coursework_unet``) run exactly as a user's
comparison does, at 32 px for a few seconds each; the test checks the nested MLflow runs, the table, the plot and
that the scored cases were never used for training or validation.
"""

from __future__ import annotations

import json

import pytest

from medseg.strategies import StrategyError
from medseg.strategies.kfold import write_cv_fold
from medseg.strategies.network_comparison import aggregate, check_networks, table_markdown
from tests.medseg.strategies.conftest import children_of, run_command

pytestmark = pytest.mark.slow

SMALL = ["--set", "spatial_size=[32,32]", "--set", "batch_size=2", "--set", "tta=false"]


@pytest.fixture(scope="module")
def cardiac_folds(tmp_path_factory):
    """Cardiac phantom slices whose training split is converted into 3 folds (the cross-validation pool)."""
    from data_prep.__main__ import main as data_prep_main

    root = tmp_path_factory.mktemp("compare_networks")
    raw, out = root / "raw", root / "cardiac"
    assert data_prep_main(["phantom", "cardiac-png", "--out", str(raw), "--n", "18", "--seed", "1"]) in (0, None)
    assert data_prep_main(["cardiac-png", "--src", str(raw), "--out", str(out), "--folds", "3", "--val-ratio", "0",
                           "--test-ratio", "0", "--seed", "1"]) in (0, None)
    return out


def test_cv_fold_scores_one_fold_validates_on_the_next_trains_on_the_rest(cardiac_folds, tmp_path):
    folder = write_cv_fold(cardiac_folds / "datalist.json", 2, tmp_path / "fold2")
    datalist = json.loads((folder / "datalist.json").read_text())
    assert {int(i["fold"]) for i in datalist["testing"]} == {2}
    assert {int(i["fold"]) for i in datalist["validation"]} == {0}
    assert {int(i["fold"]) for i in datalist["training"]} == {1}
    pool = json.loads((cardiac_folds / "datalist.json").read_text())["training"]
    images = [i["image"] for section in ("training", "validation", "testing") for i in datalist[section]]
    assert len(images) == len(set(images)) == len(pool) >= 9
    assert (folder / "stats.json").is_file()


def test_two_networks_on_one_fold(cardiac_folds, client, tmp_path, capsys):
    argv = ["--bundle", "cardiac_unet", "--dataset_dir", str(cardiac_folds), "--networks", "unet", "coursework_unet",
            "--time_budget", "6s", "--folds", "1", "--seed", "0", "--experiment_name", "compare-networks-test",
            "--out", str(tmp_path / "cmp"), *SMALL]
    assert run_command("compare_networks", argv) == 0
    printed = capsys.readouterr().out
    assert "| network | folds | mean fg Dice |" in printed and "coursework_unet" in printed
    rows = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert set(rows) == {"unet", "coursework_unet"}
    for row in rows.values():
        assert row["folds"] == 1 and 0.0 <= row["mean_dice"]["mean"] <= 1.0
        assert set(row["dice"]) == {"right ventricle", "myocardium", "left ventricle"}
        assert row["parameters"] > 1000 and row["train_minutes"]["mean"] > 0.05  # the 6 s budget was spent
    assert rows["unet"]["parameters"] != rows["coursework_unet"]["parameters"]
    assert (tmp_path / "cmp" / "comparison.png").stat().st_size > 5000
    # MLflow: one parent, a training and a test child per network, the table and plot on the parent
    experiment = client.get_experiment_by_name("compare-networks-test")
    (parent,) = [r for r in client.search_runs([experiment.experiment_id])
                 if r.data.tags.get("medseg.strategy") == "compare-networks"]
    children = children_of(client, parent.info.run_id, "compare-networks-test")
    assert len(children) == 4
    assert sorted((c.data.params["compare.network"], c.info.run_name.endswith("-test")) for c in children) == [
        ("coursework_unet", False), ("coursework_unet", True), ("unet", False), ("unet", True)]
    trained = [c for c in children if not c.info.run_name.endswith("-test")]
    assert {c.data.params["compare.network"]: c.data.params["network"] for c in trained} == {
        "unet": "UNet", "coursework_unet": "CourseworkUNet"}  # what the bundle built is what was asked for
    assert all("test/mean_dice" in c.data.metrics and "val/mean_dice" in c.data.metrics for c in trained)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert {"comparison/comparison.md", "comparison/comparison.png"} <= artifacts
    assert parent.data.metrics["cv/unet/mean_dice"] == pytest.approx(rows["unet"]["mean_dice"]["mean"])
    # the scored fold's cases never trained or validated a model
    fold = json.loads((tmp_path / "cmp" / "folds" / "fold1" / "datalist.json").read_text())
    scored = {i["image"] for i in fold["testing"]}
    assert scored and not scored & {i["image"] for s in ("training", "validation") for i in fold[s]}


def test_bad_input_is_one_line(cardiac_folds, tmp_path, capsys):
    with pytest.raises(StrategyError, match="network 'resnet' is not registered; registered networks: unet,"):
        check_networks(["unet", "resnet"])
    argv = ["--bundle", "cardiac_unet", "--dataset_dir", str(cardiac_folds), "--networks", "unet", "--folds", "7",
            "--out", str(tmp_path / "bad")]
    assert run_command("compare_networks", argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no fold [7]" in err[0]
    assert run_command("compare_networks", [*argv[:-4], "--time_budget", "soon", "--out", str(tmp_path / "bad")]) == 2
    assert "soon" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "runs").exists()  # nothing trained


def test_table_orders_by_mean_dice_and_shows_spread():
    def score(network, dice):
        from medseg.strategies.network_comparison import FoldScore

        summary = {"labels": {"0": "background", "1": "lesion"}, "metrics": {"mean_dice": dice, "mean_hd95": 3.0},
                   "per_class": {"lesion": {"dice": dice, "hd95": 3.0}}}
        return FoldScore(network, 0, summary, 60.0, 0.1, 10, 1_000_000)

    rows = {"a": aggregate([score("a", 0.5), score("a", 0.7)]), "b": aggregate([score("b", 0.8), score("b", 0.8)])}
    table = table_markdown(rows).splitlines()
    assert table[2].startswith("| b | 2 | 0.800 ± 0.000") and table[3].startswith("| a | 2 | 0.600 ± 0.141")
