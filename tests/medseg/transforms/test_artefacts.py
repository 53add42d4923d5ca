"""RandSkinArtefactsd: what it draws, where, and what it never touches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.transforms import RandSkinArtefactsd


def _sample(size: int = 64) -> dict:
    image = MetaTensor(torch.full((3, size, size), 0.7), meta={"filename_or_obj": "case.png"})
    label = torch.zeros(1, size, size)
    label[:, size // 4 : size // 2, size // 4 : size // 2] = 1  # a square lesion
    return {"image": image, "label": MetaTensor(label)}


def test_draws_on_the_image_and_leaves_label_and_input_alone():
    data = _sample()
    before_image, before_label = data["image"].clone(), data["label"].clone()
    transform = RandSkinArtefactsd(keys="image", prob=1.0, max_artefacts=4)
    transform.set_random_state(0)
    changed = 0
    for _ in range(10):
        out = transform(data)
        assert isinstance(out["image"], MetaTensor) and out["image"].meta["filename_or_obj"] == "case.png"
        assert out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.float32
        assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
        assert torch.equal(out["label"], before_label)
        changed += int(not torch.equal(out["image"], before_image))
    assert changed == 10
    assert torch.equal(data["image"], before_image)  # the input sample is not drawn on


def test_probability_zero_returns_the_sample_unchanged():
    data = _sample()
    out = RandSkinArtefactsd(keys="image", prob=0.0)(data)
    assert out["image"] is data["image"]


def test_same_seed_same_artefacts():
    first, second = (RandSkinArtefactsd(keys="image", prob=1.0) for _ in range(2))
    first.set_random_state(3)
    second.set_random_state(3)
    data = _sample()
    assert torch.equal(first(data)["image"], second(data)["image"])


@pytest.mark.parametrize("kind", ["hair", "line", "glare"])
def test_each_thin_kind_draws(kind):
    transform = RandSkinArtefactsd(keys="image", prob=1.0, kinds=[kind])
    transform.set_random_state(1)
    data = _sample()
    assert any(not torch.equal(transform(data)["image"], data["image"]) for _ in range(5))


def test_stickers_only_cover_background():
    transform = RandSkinArtefactsd(keys="image", prob=1.0, max_artefacts=3, kinds=["sticker"])
    transform.set_random_state(2)
    data = _sample()
    lesion = data["label"][0].bool().numpy()
    drawn = 0
    for _ in range(20):
        diff = (transform(data)["image"] != data["image"]).any(0).numpy()
        assert not (diff & lesion).any()
        drawn += int(diff.any())
    assert drawn >= 15  # a place on background is found nearly always


def test_a_lesion_filling_the_image_gets_no_sticker():
    data = _sample()
    data["label"] = MetaTensor(torch.ones(1, 64, 64))
    transform = RandSkinArtefactsd(keys="image", prob=1.0, kinds=["sticker"])
    assert all(torch.equal(transform(data)["image"], data["image"]) for _ in range(5))


def test_numpy_images_stay_numpy():
    data = {"image": np.full((3, 32, 32), 0.5, np.float32), "label": np.zeros((1, 32, 32), np.float32)}
    transform = RandSkinArtefactsd(keys="image", prob=1.0)
    transform.set_random_state(0)
    out = transform(data)
    assert isinstance(out["image"], np.ndarray) and not np.array_equal(out["image"], data["image"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kinds": ["smudge"]}, "choose from"), ({"kinds": []}, "choose from"), ({"max_artefacts": 0}, "give 1 or more")],
)
def test_bad_settings_say_which(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandSkinArtefactsd(keys="image", **kwargs)


def test_a_grey_image_is_refused_in_one_line():
    transform = RandSkinArtefactsd(keys="image", prob=1.0)
    with pytest.raises(ValueError, match=r"'image' has shape \(1, 32, 32\); it needs an RGB image"):
        transform({"image": torch.zeros(1, 32, 32), "label": torch.zeros(1, 32, 32)})
