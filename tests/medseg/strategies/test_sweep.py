"""``medseg sweep``: a 2x2 grid gives four child runs under one parent and the compare table."""

from __future__ import annotations

import pytest

from medseg.strategies import StrategyError
from medseg.strategies.sweep import parse_grid, split_list
from tests.medseg.strategies.conftest import children_of, run_command, runs_of

pytestmark = pytest.mark.slow


def test_grid_parsing():
    assert split_list("[dice, ce,[1,2], 'a,b']") == ["dice", "ce", "[1,2]", "'a,b'"]
    grid = parse_grid(["loss=[dicefocal,weighted_ce]", "lr=[1e-2,1e-3]", "spatial_size=[[16,16],[32,32]]"])
    assert grid == {"loss": ["dicefocal", "weighted_ce"], "lr": [0.01, 0.001], "spatial_size": [[16, 16], [32, 32]]}
    with pytest.raises(StrategyError, match="KEY="):
        parse_grid(["lr"])


def test_two_by_two_sweep(unet_bundle, client, tmp_path, capsys):
    argv = ["--bundle", str(unet_bundle), "--grid", "loss=[dice,weighted_ce]", "--grid", "lr=[1e-2,1e-3]"]
    assert run_command("sweep", [*argv, "--out", str(tmp_path / "sweep")]) == 0
    (parent,) = [r for r in runs_of(client) if r.data.tags.get("medseg.strategy") == "sweep"]
    children = children_of(client, parent.info.run_id)
    points = sorted((c.data.params["sweep.loss"], c.data.params["optimizer.lr"]) for c in children)
    assert points == [("dice", "0.001"), ("dice", "0.01"), ("weighted_ce", "0.001"), ("weighted_ce", "0.01")]
    assert all("val/mean_dice" in c.data.metrics for c in children)
    assert {c.data.params["loss"] for c in children} == {"DiceLoss", "DiceCELoss"}
    # what ran is what is logged: the sweep changes learning_rate itself, the optimizer follows it
    assert all(c.data.params["learning_rate"] == c.data.params["optimizer.lr"] for c in children)
    printed = capsys.readouterr().out
    assert "4 runs of 4 given runs" in printed and "sweep.loss" in printed
    # the parent: the best child's metrics and params, and a table of every child
    best_id = parent.data.tags["medseg.best_child_run_id"]
    best = client.get_run(best_id)
    assert best_id in {c.info.run_id for c in children}
    assert best.data.metrics["val/best_mean_dice"] == max(c.data.metrics["val/best_mean_dice"] for c in children)
    assert parent.data.metrics["val/best_mean_dice"] == best.data.metrics["val/best_mean_dice"]
    assert parent.data.params["learning_rate"] == best.data.params["learning_rate"]
    summary = {a.path for a in client.list_artifacts(parent.info.run_id, "summary")}
    assert summary == {"summary/children.csv", "summary/children.json"}
    table = (tmp_path / "table").mkdir() or client.download_artifacts(
        parent.info.run_id, "summary/children.csv", str(tmp_path / "table")
    )
    rows = open(table).read().splitlines()
    assert len(rows) == 5 and "sweep.loss" in rows[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grid", "momentum_x=[1,2]"], "unknown grid key 'momentum_x'"),
        (["--grid", "loss=[dice,hinge]"], "unknown loss ['hinge']"),
        (["--grid", "strategy=[onecycle,warp]"], "unknown strategy 'warp'"),
        (["--grid", "lr=[1e-3]", "--strategy", "warp"], "unknown strategy 'warp'"),
        (["--grid", "lr=[1e-3]", "--set", "max_epoch=1"], "--set max_epoch=...: the bundle's config has no id"),
    ],
)
def test_bad_grid_stops_before_any_run(unet_bundle, client, tmp_path, capsys, argv, message):
    before = len(runs_of(client))
    assert run_command("sweep", ["--bundle", str(unet_bundle), *argv, "--out", str(tmp_path / "s")]) == 2
    assert message in capsys.readouterr().err
    assert len(runs_of(client)) == before and not (tmp_path / "s").exists()


def test_network_key_layers_the_variant_file_and_refuses_unknown_names():
    from medseg.strategies.sweep import check_grid, point_overrides

    grid = parse_grid(["network=[unet,coursework_unet]"])
    check_grid(grid, parser=None)  # network names need no config lookup
    assert point_overrides({"network": "unet"}, None) == ({}, [])
    _, files = point_overrides({"network": "coursework_unet"}, None)
    assert [f.rsplit("/", 1)[-1] for f in files] == ["cardiac_coursework_unet.json"]
    with pytest.raises(StrategyError, match="--grid network: network 'resnet' is not registered; registered networks"):
        check_grid(parse_grid(["network=[unet,resnet]"]), parser=None)
