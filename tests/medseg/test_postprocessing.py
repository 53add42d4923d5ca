"""Post-processing chosen on validation data: kept when it helps, refused when it hurts, applied as chosen."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medseg.postprocessing import ApplyPostprocessingd, apply_postprocessing, choose_postprocessing


def _disc(shape, centre, radius, value=1):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return np.where((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2, value, 0).astype(np.uint8)


def _cases_with_specks(n=4):
    """One lesion per ground truth; predictions add a false speck far away and a hole inside."""
    preds, gts = [], []
    for i in range(n):
        gt = _disc((40, 40), (20, 20), 8 + i)
        pred = gt.copy()
        pred[2:5, 2:5] = 1  # a separate false-positive blob
        pred[19:22, 19:22] = 0  # an enclosed hole
        preds.append(pred)
        gts.append(gt)
    return preds, gts


def test_keeps_largest_component_and_fill_holes_when_they_help():
    preds, gts = _cases_with_specks()
    originals = [p.copy() for p in preds]
    decision = choose_postprocessing(preds, gts, num_classes=2, metrics=["dice", "thresholded_jaccard"])
    for pred, original in zip(preds, originals, strict=True):  # the trials must not write into the inputs
        np.testing.assert_array_equal(pred, original)
    assert decision["classes"]["1"] == {"largest_component": True, "fill_holes": True}
    assert decision["scores"]["after"]["mean_dice"] == pytest.approx(1.0)
    assert decision["scores"]["before"]["mean_dice"] < 1.0
    json.dumps(decision)  # serialisable
    np.testing.assert_array_equal(apply_postprocessing(preds[0], decision), gts[0])


def test_refuses_largest_component_when_it_hurts():
    """Ground truth has two lesions of similar size: keeping only the largest would delete a true one."""
    preds, gts = [], []
    for i in range(3):
        gt = _disc((40, 40), (10, 10), 5 + i) | _disc((40, 40), (28, 28), 6)
        preds.append(gt.copy())
        gts.append(gt)
    decision = choose_postprocessing(preds, gts, num_classes=2)
    assert decision["classes"]["1"]["largest_component"] is False
    assert decision["scores"]["after"] == decision["scores"]["before"]


def test_refuses_filling_a_ring_around_another_class():
    """Myocardium (2) rings the left ventricle (3): filling its holes would swallow the ventricle."""
    ring = _disc((40, 40), (20, 20), 12, 2)
    gt = np.where(_disc((40, 40), (20, 20), 7) > 0, 3, ring).astype(np.uint8)
    preds = [gt.copy(), gt.copy()]
    decision = choose_postprocessing(preds, [gt, gt], num_classes=4)
    np.testing.assert_array_equal(preds[0], gt)  # the refused fill did not leak into the predictions
    assert decision["classes"]["2"]["fill_holes"] is False
    assert decision["classes"]["3"]["fill_holes"] is False


def test_dictionary_transform_from_file(tmp_path):
    preds, gts = _cases_with_specks(2)
    decision = choose_postprocessing(preds, gts, num_classes=2)
    path = tmp_path / "postprocessing.json"
    path.write_text(json.dumps(decision))
    item = {"pred": torch.as_tensor(preds[0][None]), "other": 1}
    out = ApplyPostprocessingd("pred", str(path))(item)
    assert isinstance(out["pred"], torch.Tensor) and out["pred"].shape == (1, 40, 40)
    np.testing.assert_array_equal(out["pred"][0].numpy(), gts[0])
    assert torch.equal(item["pred"], torch.as_tensor(preds[0][None]))  # input not modified


@pytest.mark.parametrize(
    "decision, match",
    [({"1": {"largest_component": True}}, "'classes'"),
     ({"classes": {"0": {"fill_holes": True}}}, "foreground label"),
     ({"classes": {"1": {"fill_holes": "yes"}}}, "true or false"),
     ({"classes": {"1": {"erode": True}}}, "true or false")],
)
def test_bad_decisions(decision, match):
    with pytest.raises(ValueError, match=match):
        ApplyPostprocessingd("pred", decision)


def test_bad_files_and_inputs(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        ApplyPostprocessingd("pred", str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        ApplyPostprocessingd("pred", str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="argmax first"):
        ApplyPostprocessingd("pred", {"classes": {}})({"pred": np.zeros((2, 4, 4))})
    with pytest.raises(ValueError, match="same, non-zero"):
        choose_postprocessing([], [], 2)
    with pytest.raises(ValueError, match="metrics"):
        choose_postprocessing([np.zeros((4, 4))], [np.zeros((4, 4))], 2, metrics=["hd95"])
    with pytest.raises(ValueError, match="differ"):
        choose_postprocessing([np.zeros((4, 4))], [np.zeros((4, 5))], 2)
