"""The fused optimiser switch: fused where the device has a kernel, and the same update as torch's loop."""

from __future__ import annotations

import pytest
import torch

from medseg.runtime import fused_optimizer


def test_fused_only_where_a_kernel_exists():
    assert fused_optimizer("cpu") is True
    assert fused_optimizer(torch.device("cuda", 0)) is True
    assert fused_optimizer("meta") is None


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW])
def test_fused_update_matches_the_default(optimizer):
    torch.manual_seed(0)
    reference = torch.nn.Conv2d(3, 8, 3)
    fused = torch.nn.Conv2d(3, 8, 3)
    fused.load_state_dict(reference.state_dict())
    x, initial = torch.rand(4, 3, 16, 16), reference.weight.detach().clone()
    optimisers = [optimizer(net.parameters(), lr=1e-2, weight_decay=1e-4, fused=fused_optimizer("cpu") if i else None)
                  for i, net in enumerate((reference, fused))]
    for _ in range(3):
        for net, opt in zip((reference, fused), optimisers, strict=True):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(reference.parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(fused.weight, initial)  # it did train
