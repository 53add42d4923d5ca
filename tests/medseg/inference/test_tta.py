"""FlipTTAInferer: views are undone exactly, probabilities are averaged, bad settings fail in one line."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer

from medseg.inference import FlipTTAInferer


class ShiftRight(torch.nn.Module):
    """Logits that depend on orientation: class 1 scores the pixel to the left of each pixel."""

    def forward(self, x):
        left = torch.roll(x, shifts=1, dims=-1)
        return torch.cat([torch.zeros_like(x), 4 * left - 2], dim=1)


def _image(h=8, w=12):
    torch.manual_seed(0)
    return (torch.rand(2, 1, h, w) > 0.5).float()


def test_equivariant_network_gives_plain_probabilities():
    """A network that commutes with flips and rotations (pixel-wise) gets the same answer with or without TTA."""
    net = torch.nn.Conv2d(1, 3, kernel_size=1)
    x = _image()
    plain = torch.softmax(net(x), dim=1)
    for flips, rot90 in [(True, False), (False, True), (True, True)]:
        out = FlipTTAInferer(flips=flips, rot90=rot90)(x, net)
        assert out.shape == plain.shape  # non-square input: rotated views are rotated back
        torch.testing.assert_close(out, plain, atol=1e-6, rtol=1e-5)


def test_views_are_averaged():
    """An orientation-dependent network: TTA must equal the hand-computed mean over the mirrored views."""
    net, x = ShiftRight(), _image()
    out = FlipTTAInferer(flips=True, rot90=False)(x, net)
    expected = 0
    for dims in [(), (2,), (3,), (2, 3)]:
        view = torch.flip(x, dims) if dims else x
        probs = torch.softmax(net(view), dim=1)
        expected = expected + (torch.flip(probs, dims) if dims else probs)
    torch.testing.assert_close(out, expected / 4)
    assert not torch.allclose(out, torch.softmax(net(x), dim=1))  # the views did differ
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2, 8, 12))


def test_view_counts():
    assert len(FlipTTAInferer(flips=True).views(2)) == 4
    assert len(FlipTTAInferer(flips=True, rot90=True).views(2)) == 8  # the symmetries of the square
    assert len(FlipTTAInferer(flips=False, rot90=True).views(2)) == 4
    assert len(FlipTTAInferer(flips=True).views(3)) == 8
    assert FlipTTAInferer(flips=False, rot90=False).views(2) == [(0, ())]


def test_off_returns_probabilities_and_sigmoid():
    net, x = ShiftRight(), _image()
    torch.testing.assert_close(FlipTTAInferer(flips=False)(x, net), torch.softmax(net(x), dim=1))
    torch.testing.assert_close(FlipTTAInferer(flips=False, activation="sigmoid")(x, net), torch.sigmoid(net(x)))


def test_wraps_sliding_window():
    net, x = torch.nn.Conv2d(1, 2, 3, padding=1), torch.rand(1, 1, 16, 16)
    inner = SlidingWindowInferer(roi_size=(8, 8), overlap=0.5)
    out = FlipTTAInferer(inferer=inner, flips=True, rot90=True)(x, net)
    assert out.shape == (1, 2, 16, 16)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(1, 16, 16))


@pytest.mark.parametrize(
    "kwargs, word",
    [({"flips": "yes"}, "'flips'"), ({"rot90": 1}, "'rot90'"), ({"activation": "relu"}, "'activation'"),
     ({"inferer": 3}, "'inferer'")],
)
def test_bad_settings(kwargs, word):
    with pytest.raises(ValueError, match=word):
        FlipTTAInferer(**kwargs)


def test_rot90_needs_a_plane_and_tensor_output():
    with pytest.raises(ValueError, match="'rot90' needs 2"):
        FlipTTAInferer(rot90=True)(torch.rand(1, 1, 8), torch.nn.Conv1d(1, 2, 1))
    with pytest.raises(ValueError, match="not a tensor"):
        FlipTTAInferer(inferer=SimpleInferer())(torch.rand(1, 1, 8, 8), lambda x: [x, x])
