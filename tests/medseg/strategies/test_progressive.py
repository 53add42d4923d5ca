"""``medseg progressive``: stage two starts from stage one's best weights; one parent run, a child per stage."""

from __future__ import annotations

import pytest
import torch

from medseg.strategies import progressive
from tests.medseg.strategies.conftest import children_of, run_command, runs_of

pytestmark = pytest.mark.slow


def test_stage_two_starts_from_stage_one(unet_bundle, client, tmp_path, monkeypatch):
    loaded = []
    original = progressive.InitialWeights.load

    def load_and_record(self, network):
        original(self, network)
        loaded.append((self.path, {k: v.detach().clone() for k, v in network.state_dict().items()}))

    monkeypatch.setattr(progressive.InitialWeights, "load", load_and_record)
    out = tmp_path / "prog"
    assert run_command("progressive", ["--bundle", str(unet_bundle), "--sizes", "16", "32", "--out", str(out)]) == 0
    stage_one = out / "stage1_16px" / "model.pt"
    assert [path for path, _ in loaded] == [stage_one]  # only stage two loads, from stage one's best
    saved = torch.load(stage_one)
    assert saved.keys() == loaded[0][1].keys()
    assert all(torch.equal(saved[k], loaded[0][1][k]) for k in saved)
    (parent,) = [r for r in runs_of(client) if r.data.tags.get("medseg.strategy") == "progressive"]
    children = children_of(client, parent.info.run_id)
    assert sorted(c.data.params["stage_size"] for c in children) == ["16", "32"]
    assert sorted(c.data.params["spatial_size"] for c in children) == ["[16, 16]", "[32, 32]"]  # logged by the bundle
    assert all(c.info.status == "FINISHED" for c in children) and parent.info.status == "FINISHED"


@pytest.mark.parametrize("sizes", [["64"], ["64", "32"]])
def test_bad_sizes(unet_bundle, tmp_path, capsys, sizes):
    assert run_command("progressive", ["--bundle", str(unet_bundle), "--sizes", *sizes, "--out", str(tmp_path)]) == 2
    assert "--sizes" in capsys.readouterr().err
