"""A network as a checkpoint sees it without its training-only parts (``medseg.bundle.StateDictWithout``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.bundle import StateDictWithout


class Block(nn.Module):
    def __init__(self, super_head: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.super_head = super_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x)
        if self.super_head is not None:  # as DynUNet's skip layers: in eval mode too
            self.extra = self.super_head(features)
        return features


class HeadedNet(nn.Module):
    """A block and an output, and a training-only head reachable under two names (as DynUNet's super heads are)."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleList([nn.Conv2d(4, 2, 1)])
        self.block = Block(self.heads[0])  # the same module, a second name
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.block(x))


DROP = "heads|super_head"


def test_state_dict_leaves_out_the_dropped_parameters_and_loads_without_them():
    net = HeadedNet()
    view = StateDictWithout(net, drop=DROP)
    state = view.state_dict()
    assert set(state) == {"block.conv.weight", "block.conv.bias", "out.weight", "out.bias"}
    other = StateDictWithout(HeadedNet(), drop=DROP)
    other.load_state_dict(state)
    assert all(torch.equal(other.network.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(KeyError, match="missing keys.*out.weight"):
        other.load_state_dict({k: v for k, v in state.items() if k != "out.weight"})


def test_remove_dropped_gives_the_network_the_checkpoint_describes():
    view = StateDictWithout(HeadedNet(), drop=DROP)
    copy = view.remove_dropped(HeadedNet())
    # removed under both of the shared head's names; nothing else touched
    assert copy.heads is None and copy.block.super_head is None
    assert set(copy.state_dict()) == set(view.state_dict())
    copy.load_state_dict(view.state_dict())  # strict
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(copy.eval()(x), view.network.eval()(x))
    assert view.network.heads is not None  # the viewed network keeps its heads
