"""channel_argmax: the labels torch.argmax gives (first index on ties), without its slow CPU path."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from medseg.transforms import channel_argmax


@pytest.mark.parametrize(("shape", "dim"), [((2, 37, 29), 0), ((4, 40, 33), 0), ((3, 4, 21, 17), 1)])
def test_same_labels_as_argmax(shape, dim):
    scores = torch.rand(*shape)
    assert torch.equal(channel_argmax(scores, dim), scores.argmax(dim))
    kept = channel_argmax(scores, dim, keepdim=True)
    assert kept.shape == scores.argmax(dim, keepdim=True).shape and kept.dtype == torch.int64


def test_ties_go_to_the_first_class_and_metatensors_come_back_plain():
    scores = torch.zeros(3, 4, 4)
    scores[1:, 0, 0] = 1.0  # classes 1 and 2 tie
    scores[2, 1, 1] = 1.0
    labels = channel_argmax(MetaTensor(scores))
    assert type(labels) is torch.Tensor
    assert labels[0, 0] == 1 and labels[1, 1] == 2 and labels[2, 2] == 0  # all-zero pixel: class 0

