"""Numpy metrics against hand-computed examples, edge cases and MONAI's implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.metrics import (
    annotated_mask,
    class_level_jaccard,
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    isic_jaccard,
    isic_thresholded_jaccard,
    merged_iou_from_confusion,
    pixel_accuracy,
    score_label_maps,
)

NAN = float("nan")


def _square(shape=(4, 4), rows=slice(0, 2), cols=slice(0, 2), value=1):
    m = np.zeros(shape, dtype=np.int64)
    m[rows, cols] = value
    return m


def _close(a, b, rtol=1e-9):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rtol, equal_nan=True)


def test_confusion_matrix_counts_pixels_by_truth_and_prediction():
    gt = np.array([[0, 1], [2, 2]])
    pred = np.array([[0, 2], [2, 1]])
    expected = np.zeros((3, 3), dtype=int)
    expected[0, 0] = expected[1, 2] = expected[2, 2] = expected[2, 1] = 1
    _close(confusion_matrix(pred, gt, 3), expected)
    batch = confusion_matrix(np.stack([pred, gt]), np.stack([gt, gt]), 3)
    _close(batch[0], expected)
    _close(batch[1], np.diag([1, 1, 2]))


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(ValueError, match="outside 0..1"):
        confusion_matrix(np.full((2, 2), 2), np.zeros((2, 2), int), 2)


def test_overlap_scores_of_a_hand_computed_case():
    gt = _square()  # 4 lesion pixels
    pred = _square(cols=slice(0, 3))  # 6 pixels, 4 of them right
    _close(dice_per_class(pred, gt, 2)[1], 2 * 4 / (4 + 6))
    _close(iou_per_class(pred, gt, 2)[1], 4 / 6)
    _close(dice_per_class(pred, gt, 2)[0], 2 * 10 / (12 + 10))  # background: 10 right of 12 true, 10 predicted
    assert pixel_accuracy(pred, gt) == 14 / 16
    assert isic_jaccard(pred, gt) == pytest.approx(4 / 6)
    scores = score_label_maps(["a"], [pred], [gt], ["background", "lesion"])
    row = scores.per_case_rows()[0]
    assert row["pixsim"] == pytest.approx(14 / 16)
    assert row["pixsim_black"] == pytest.approx(12 / 16)
    assert row["lesion_recall"] == 1.0 and row["n_lesion_90"] == 1.0
    assert row["thresholded_jaccard"] == pytest.approx(4 / 6)  # 0.667 >= 0.65 is kept


def test_edge_cases_both_empty_empty_truth_and_all_background_prediction():
    empty = np.zeros((4, 4), dtype=np.int64)
    lesion = _square()
    cases = {"both_empty": (empty, empty), "false_positive": (lesion, empty), "all_background": (empty, lesion)}
    scores = score_label_maps(
        list(cases), [p for p, _ in cases.values()], [g for _, g in cases.values()], ["bg", "les"]
    )
    rows = {r["case_id"]: r for r in scores.per_case_rows()}
    # both empty: the class is left out (NaN), but the ISIC Jaccard of two empty masks is 1
    assert math.isnan(rows["both_empty"]["dice_les"]) and math.isnan(rows["both_empty"]["mean_dice"])
    assert rows["both_empty"]["jaccard"] == 1.0 and rows["both_empty"]["pixsim"] == 1.0
    assert math.isnan(rows["both_empty"]["lesion_recall"]) and math.isnan(rows["both_empty"]["n_lesion_50"])
    # empty ground truth, non-empty prediction: a false positive scores 0, not NaN
    assert rows["false_positive"]["dice_les"] == 0.0 and rows["false_positive"]["jaccard"] == 0.0
    assert rows["false_positive"]["pixsim"] == pytest.approx(12 / 16)
    assert rows["false_positive"]["pixsim_black"] == 1.0
    # an all-background prediction scores exactly the black baseline
    assert rows["all_background"]["dice_les"] == 0.0 and rows["all_background"]["lesion_recall"] == 0.0
    assert rows["all_background"]["pixsim"] == rows["all_background"]["pixsim_black"] == pytest.approx(12 / 16)
    assert rows["all_background"]["n_90"] == 0.0 and rows["all_background"]["n_90_black"] == 0.0
    summary = scores.summary()
    # mean Dice skips the NaN of the doubly-empty case: mean of (0, 0)
    assert summary["metrics"]["mean_dice"] == 0.0
    assert summary["metrics"]["jaccard_mean"] == pytest.approx(1 / 3)
    assert summary["metrics"]["N_lesion_50"] == 0.0  # only one image has a lesion, and it was missed


def test_class_present_in_one_image_only_is_left_out_of_the_others():
    gt1, pred1 = _square(value=1), _square(value=1)
    gt2 = _square(value=1) + _square(rows=slice(2, 4), cols=slice(2, 4), value=2)
    pred2 = _square(value=1) + _square(rows=slice(2, 4), cols=slice(2, 3), value=2)
    scores = score_label_maps(["one", "two"], [pred1, pred2], [gt1, gt2], ["bg", "a", "b"])
    rows = scores.per_case_rows()
    assert math.isnan(rows[0]["dice_b"]) and rows[0]["mean_dice"] == 1.0
    assert rows[1]["dice_b"] == pytest.approx(2 * 2 / (4 + 2))
    assert rows[1]["mean_dice"] == pytest.approx((1 + 2 / 3) / 2)
    table = scores.summary()["per_class"]
    assert table["b"]["dice"] == pytest.approx(2 / 3) and table["b"]["n_cases_scored"] == 1
    assert table["a"]["dice"] == 1.0 and table["a"]["n_cases_scored"] == 2


def test_unannotated_class_is_left_out_for_that_case():
    gt = _square(value=1)  # myocardium (2) not drawn: unannotated, not absent
    pred = _square(value=1) + _square(rows=slice(2, 4), cols=slice(2, 4), value=2)
    assert math.isnan(dice_per_class(pred, gt, 3, annotated=[1])[2])
    assert dice_per_class(pred, gt, 3, annotated=None)[2] == 0.0
    scores = score_label_maps(["x", "y"], [pred, pred], [gt, gt], ["bg", "lv", "myo"], annotated=[[1], None])
    rows = scores.per_case_rows()
    assert math.isnan(rows[0]["dice_myo"]) and rows[0]["mean_dice"] == 1.0
    assert rows[1]["dice_myo"] == 0.0 and rows[1]["mean_dice"] == 0.5
    _close(annotated_mask([1], 3), [True, True, False])


def test_merged_classes_and_class_level_jaccard():
    gt = np.array([[1, 1, 2, 2], [3, 3, 0, 0]])
    pred = np.array([[2, 1, 1, 2], [3, 0, 0, 0]])
    merged = merged_iou_from_confusion(confusion_matrix(pred, gt, 4), {"ab": [1, 2], "c": [3]})
    assert merged["ab"] == 1.0  # 1 and 2 swap inside the group: perfect as a group
    assert merged["c"] == pytest.approx(1 / 2)
    scores = score_label_maps(["m"], [pred], [gt], ["bg", "a", "b", "c"], merged=["ab=a+b"])
    assert scores.summary()["metrics"]["iou_ab"] == 1.0
    assert class_level_jaccard(np.array([0.7, 0.5, NAN, 0.65])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="not a foreground label"):
        score_label_maps(["m"], [pred], [gt], ["bg", "a", "b", "c"], merged=["x=a+zzz"])


def _isic_challenge_score(preds, gts, threshold=0.65):
    """The ISIC 2018 task 1 definition, written out directly on 0/255 masks."""
    total = 0.0
    for p, g in zip(preds, gts, strict=True):
        p, g = p > 128, g > 128
        union = np.logical_or(p, g).sum()
        j = 1.0 if union == 0 else np.logical_and(p, g).sum() / union
        total += 0.0 if j < threshold else j
    return total / len(preds)


def test_thresholded_jaccard_matches_the_challenge_definition_on_random_masks():
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for i in range(40):
        g = np.zeros((32, 32), np.uint8)
        if i % 7:  # some images empty
            r, c, h, w = rng.integers(0, 16, 4)
            g[r : r + h + 2, c : c + w + 2] = 255
        p = g.copy()
        flip = rng.random(g.shape) < rng.uniform(0, 0.3)
        p[flip] = 255 - p[flip]
        gts.append(g)
        preds.append(p)
    expected = _isic_challenge_score(preds, gts)
    assert 0 < expected < 1
    assert isic_thresholded_jaccard([p > 127 for p in preds], [g > 127 for g in gts]) == pytest.approx(expected)
    scores = score_label_maps(
        [str(i) for i in range(40)], [p // 255 for p in preds], [g // 255 for g in gts], ["b", "l"]
    )
    assert scores.summary()["metrics"]["thresholded_jaccard"] == pytest.approx(expected)
    plain = scores.summary()["metrics"]["jaccard_mean"]
    assert plain >= expected


def test_dice_iou_and_confusion_scores_agree_with_monai():
    torch = pytest.importorskip("torch")
    from monai.metrics import ConfusionMatrixMetric, DiceMetric, MeanIoU
    from monai.networks.utils import one_hot

    rng = np.random.default_rng(1)
    gt = rng.integers(0, 3, size=(5, 16, 16))
    pred = np.where(rng.random(gt.shape) < 0.3, rng.integers(0, 3, size=gt.shape), gt)
    gt[0][gt[0] == 2] = 0  # class 2 absent from both masks of case 0
    pred[0][pred[0] == 2] = 0
    gt[1][gt[1] == 1] = 0  # class 1 only predicted in case 1
    scores = score_label_maps([str(i) for i in range(5)], list(pred), list(gt), ["bg", "a", "b"])
    per_class = scores.per_class()
    p = one_hot(torch.as_tensor(pred)[:, None], 3)
    g = one_hot(torch.as_tensor(gt)[:, None], 3)
    monai_dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(p, g).numpy()
    monai_iou = MeanIoU(include_background=True, reduction="none", ignore_empty=False)(p, g).numpy()
    both_empty = np.isnan(per_class["dice"])
    assert both_empty[0, 2] and both_empty.sum() == 1
    # where the class is in either mask the numbers agree; MONAI scores the doubly-empty class 1, medseg leaves it out
    _close(per_class["dice"][~both_empty], monai_dice[~both_empty], rtol=1e-5)
    _close(per_class["iou"][~both_empty], monai_iou[~both_empty], rtol=1e-5)
    assert monai_dice[0, 2] == 1.0
    cm = ConfusionMatrixMetric(include_background=True, metric_name=["sensitivity", "specificity"], reduction="none")
    cm(p, g)
    sensitivity, specificity = (t.numpy() for t in cm.aggregate())
    defined = ~np.isnan(per_class["sensitivity"])
    _close(per_class["sensitivity"][defined], sensitivity[defined], rtol=1e-5)
    _close(per_class["specificity"], specificity, rtol=1e-5)


def test_surface_distances_agree_with_monai_in_mm():
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
    from monai.networks.utils import one_hot

    yy, xx = np.mgrid[:40, :40]
    gt = ((yy - 20) ** 2 + (xx - 18) ** 2 < 100).astype(np.int64)
    gt[2:8, 30:36] = 2
    pred = ((yy - 22) ** 2 + (xx - 19) ** 2 < 90).astype(np.int64)
    pred[3:9, 31:38] = 2
    spacing = (1.5, 0.7)
    scores = score_label_maps(["c"], [pred], [gt], ["bg", "lv", "rv"], spacings=[spacing], surface_distances=True)
    p = one_hot(torch.as_tensor(pred)[None, None], 3)
    g = one_hot(torch.as_tensor(gt)[None, None], 3)
    hd = compute_hausdorff_distance(p, g, include_background=False, percentile=95, spacing=spacing).numpy()[0]
    asd = compute_average_surface_distance(p, g, include_background=False, symmetric=True, spacing=spacing).numpy()[0]
    _close(scores.hd95[0, 1:], hd, rtol=1e-5)
    _close(scores.assd[0, 1:], asd, rtol=1e-5)
    assert scores.distance_unit == "mm"
    assert scores.summary()["metrics"]["mean_hd95"] == pytest.approx(float(np.mean(hd)), rel=1e-5)
    # a structure missing from the prediction has no defined distance (left out, as MONAI does)
    missing = score_label_maps(["m"], [np.where(pred == 2, 0, pred)], [gt], ["bg", "lv", "rv"], surface_distances=True)
    assert math.isnan(missing.hd95[0, 2]) and missing.distance_unit == "px"
