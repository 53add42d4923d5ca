"""``medseg lr-find``: the plot, the suggestion, and both in MLflow."""

from __future__ import annotations

import json

import pytest

from tests.medseg.strategies.conftest import run_command, runs_of

pytestmark = pytest.mark.slow


def test_lr_find_writes_plot_and_suggestion(unet_bundle, client, tmp_path, capsys):
    out = tmp_path / "lr"
    assert run_command("lr_find", ["--bundle", str(unet_bundle), "--out", str(out), "--num_iter", "12"]) == 0
    result = json.loads((out / "lr_find.json").read_text())
    assert (out / "lr_find.png").stat().st_size > 1000
    assert 1e-7 <= result["suggested_lr"] <= 1.0 and len(result["lrs"]) == len(result["losses"]) >= 5
    assert result["lrs"] == sorted(result["lrs"])
    assert f"{result['suggested_lr']:.3g}" in capsys.readouterr().out
    (run,) = [r for r in runs_of(client) if r.data.tags.get("medseg.strategy") == "lr_find"]
    assert run.data.metrics["suggested_lr"] == pytest.approx(result["suggested_lr"])
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/lr_find.png"]


def test_lr_find_too_few_batches(unet_bundle, tmp_path, capsys):
    assert run_command("lr_find", ["--bundle", str(unet_bundle), "--out", str(tmp_path / "x"), "--num_iter", "2"]) == 2
    assert "--num_iter" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
