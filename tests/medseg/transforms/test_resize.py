"""AntialiasedResize(d): MONAI's Resize with PyTorch's anti-aliasing filter, inverted by Invertd as MONAI's is."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, Resize, Resized

from medseg.transforms import AntialiasedResize, AntialiasedResized


def _image(channels: int = 3, *spatial: int) -> MetaTensor:
    torch.manual_seed(0)
    return MetaTensor(torch.rand(channels, *spatial) * 255)


def test_a_2d_downsampling_is_filtered_by_torch():
    image = _image(3, 120, 90)
    resized = AntialiasedResize((40, 32), mode="bilinear", anti_aliasing=True)(image)
    expected = torch.nn.functional.interpolate(image.as_tensor()[None], (40, 32), mode="bilinear", antialias=True)[0]
    plain = Resize((40, 32), mode="bilinear")(image)
    assert isinstance(resized, MetaTensor) and resized.shape == (3, 40, 32)
    assert torch.allclose(resized.as_tensor(), expected)
    # the filter did something: noise averaged over ~3x3 source pixels varies less than bilinear samples of it
    assert resized.std() < 0.8 * plain.std()
    assert resized.applied_operations[-1]["class"] == "AntialiasedResize"


def test_close_to_monai_gaussian_on_a_smooth_image():
    rows, cols = torch.meshgrid(torch.linspace(0, 3, 300), torch.linspace(0, 2, 200), indexing="ij")
    image = MetaTensor(torch.stack([torch.sin(rows) * 100 + 120, torch.cos(cols) * 80 + 100, rows * cols * 20]))
    ours = AntialiasedResize((100, 64), mode="bilinear", anti_aliasing=True)(image)
    monai = Resize((100, 64), mode="bilinear", anti_aliasing=True)(image)
    assert (ours - monai).abs().mean() < 0.5  # grey levels out of 255


@pytest.mark.parametrize(
    ("spatial", "size", "kwargs"),
    [
        ((20, 24, 16), (10, 12, 8), {"mode": "trilinear", "anti_aliasing": True}),  # 3D: MONAI's Gaussian
        ((40, 30), (20, 15), {"mode": "nearest", "anti_aliasing": False}),  # labels
        ((40, 30), (20, 15), {"mode": "bilinear", "anti_aliasing": True, "anti_aliasing_sigma": 1.5}),
        ((20, 15), (40, 30), {"mode": "bilinear", "anti_aliasing": True}),  # upsampling: no filter
        ((40, 30), (20, 15), {"mode": "area"}),
    ],
)
def test_monai_runs_where_torch_filter_does_not_apply(spatial, size, kwargs):
    image = _image(2, *spatial)
    assert torch.equal(AntialiasedResize(size, **kwargs)(image), Resize(size, **kwargs)(image))


def test_invertd_maps_a_prediction_back_to_the_input_geometry():
    preprocessing = Compose(
        [AntialiasedResized(["image", "label"], (32, 32), mode=["bilinear", "nearest"], anti_aliasing=[True, False])]
    )
    data = preprocessing({"image": _image(3, 97, 71), "label": MetaTensor(torch.randint(0, 2, (1, 97, 71)))})
    assert data["image"].shape == (3, 32, 32) and data["label"].shape == (1, 32, 32)
    data["pred"] = data["image"][:2].clone()
    restored = Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=False)(data)
    assert restored["pred"].shape == (2, 97, 71)


def test_same_output_size_rules_as_monai():
    image = _image(1, 100, 50)
    for kwargs in ({"spatial_size": 40, "size_mode": "longest"}, {"spatial_size": (30, -1)}):
        ours = AntialiasedResized("image", mode="bilinear", anti_aliasing=True, **kwargs)({"image": image})["image"]
        monai = Resized("image", mode="bilinear", anti_aliasing=True, **kwargs)({"image": image})["image"]
        assert ours.shape == monai.shape
