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



def test_argmax_labelsd_is_asdiscreted_argmax():
    from monai.transforms import AsDiscreted

    from medseg.transforms import ArgmaxLabelsd

    scores = MetaTensor(torch.rand(3, 30, 20), meta={"filename_or_obj": "case_7.png"})
    ours = ArgmaxLabelsd("pred")({"pred": scores, "other": 1})
    monai = AsDiscreted("pred", argmax=True)({"pred": scores.clone(), "other": 1})
    assert torch.equal(ours["pred"].as_tensor(), monai["pred"].as_tensor())
    assert ours["pred"].dtype == monai["pred"].dtype and ours["pred"].shape == (1, 30, 20)
    assert ours["pred"].meta["filename_or_obj"] == "case_7.png" and ours["other"] == 1
    plain = ArgmaxLabelsd("pred")({"pred": torch.rand(2, 5, 4)})["pred"]
    assert type(plain) is torch.Tensor and plain.shape == (1, 5, 4)
