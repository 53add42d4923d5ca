"""Segmentation scores on numpy arrays: per case from confusion matrices, and over a set of cases.

Conventions shared by every function here:

* label maps are integer ``(H, W)`` arrays; confusion matrices are ``[..., ground truth, prediction]``
  (see :func:`medseg.metrics.confusion.confusion_matrix`), so every function works on one case ``(C, C)``
  or on a stack of cases ``(N, C, C)``;
* a class absent from both ground truth and prediction in a case scores NaN for that case, and so does a
  class not annotated for the case (``annotated``); averages skip NaN, so such a class is left out rather
  than counted as 0 or 1;
* "foreground" is every label value above 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from medseg.metrics.confusion import confusion_matrix

# ISIC 2018 task 1: a per-image Jaccard below this counts as 0
ISIC_JACCARD_THRESHOLD = 0.65


def nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean that skips NaN and returns NaN (without a warning) where nothing is left."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        result = np.nanmean(np.asarray(values, dtype=np.float64), axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def annotated_mask(annotated: Iterable[int] | None, num_classes: int) -> np.ndarray:
    """Turn a datalist item's ``annotated`` (foreground label values) into a ``(C,)`` boolean mask.

    Args:
        annotated: the label values annotated for the case; None means all. Background is always annotated.
        num_classes: number of label values.

    Returns:
        True for every class that is scored for the case.
    """
    mask = np.ones(num_classes, dtype=bool)
    if annotated is not None:
        mask[1:] = False
        for value in annotated:
            if 0 <= int(value) < num_classes:
                mask[int(value)] = True
    return mask


def _class_counts(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives, false negatives and true negatives per class, shape ``(..., C)``."""
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    fn = confusion.sum(axis=-1) - tp  # ground truth c predicted as something else
    fp = confusion.sum(axis=-2) - tp  # predicted c where the ground truth is something else
    tn = confusion.sum(axis=(-2, -1))[..., None] - tp - fn - fp
    return tp, fp, fn, tn


def _mask_unscored(values: np.ndarray, present: np.ndarray, annotated: np.ndarray | None) -> np.ndarray:
    values = np.where(present, values, np.nan)
    if annotated is not None:
        values = np.where(np.asarray(annotated, dtype=bool), values, np.nan)
    return values


def dice_from_confusion(confusion: np.ndarray, annotated: np.ndarray | None = None) -> np.ndarray:
    """Dice per class, ``2 TP / (2 TP + FP + FN)``; NaN where the class is in neither mask or not annotated.

    Args:
        confusion: ``(C, C)`` or ``(N, C, C)`` confusion matrices.
        annotated: optional ``(C,)`` or ``(N, C)`` boolean mask of scored classes.

    Returns:
        ``(C,)`` or ``(N, C)`` Dice, background included at index 0.
    """
    tp, fp, fn, _ = _class_counts(confusion)
    denominator = 2 * tp + fp + fn
    return _mask_unscored(_ratio(2 * tp, denominator), denominator > 0, annotated)


def iou_from_confusion(confusion: np.ndarray, annotated: np.ndarray | None = None) -> np.ndarray:
    """IoU (Jaccard) per class, ``TP / (TP + FP + FN)``; NaN like :func:`dice_from_confusion`."""
    tp, fp, fn, _ = _class_counts(confusion)
    denominator = tp + fp + fn
    return _mask_unscored(_ratio(tp, denominator), denominator > 0, annotated)


def sensitivity_from_confusion(confusion: np.ndarray, annotated: np.ndarray | None = None) -> np.ndarray:
    """Sensitivity (recall) per class, ``TP / (TP + FN)``; NaN where the ground truth lacks the class."""
    tp, _, fn, _ = _class_counts(confusion)
    return _mask_unscored(_ratio(tp, tp + fn), (tp + fn) > 0, annotated)


def specificity_from_confusion(confusion: np.ndarray, annotated: np.ndarray | None = None) -> np.ndarray:
    """Specificity per class, ``TN / (TN + FP)``; NaN where every pixel is the class in the ground truth."""
    _, fp, _, tn = _class_counts(confusion)
    return _mask_unscored(_ratio(tn, tn + fp), (tn + fp) > 0, annotated)


def pixel_accuracy_from_confusion(confusion: np.ndarray) -> np.ndarray | float:
    """Share of pixels predicted right ("PixSim" of one case)."""
    confusion = np.asarray(confusion)
    return _ratio(np.trace(confusion, axis1=-2, axis2=-1), confusion.sum(axis=(-2, -1)))[()]


def background_accuracy_from_confusion(confusion: np.ndarray) -> np.ndarray | float:
    """Pixel accuracy an all-background prediction would reach ("PixSim_black"): the ground truth's background share."""
    confusion = np.asarray(confusion)
    return _ratio(confusion[..., 0, :].sum(axis=-1), confusion.sum(axis=(-2, -1)))[()]


def foreground_recall_from_confusion(confusion: np.ndarray, annotated: np.ndarray | None = None) -> np.ndarray | float:
    """Share of ground-truth foreground pixels predicted as their own class; NaN when there is no foreground.

    Args:
        confusion: ``(C, C)`` or ``(N, C, C)`` confusion matrices.
        annotated: optional boolean mask of scored classes; unannotated classes are left out.

    Returns:
        the share per case.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    gt_pixels = confusion.sum(axis=-1)
    scored = np.ones(confusion.shape[-1], dtype=bool) if annotated is None else np.asarray(annotated, dtype=bool)
    scored = scored & (np.arange(confusion.shape[-1]) > 0)
    return _ratio((tp * scored).sum(axis=-1), (gt_pixels * scored).sum(axis=-1))[()]


def binary_jaccard_from_confusion(confusion: np.ndarray) -> np.ndarray | float:
    """Jaccard of foreground (label > 0) against background, 1.0 when both masks are empty (ISIC definition)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = confusion[..., 1:, 1:].sum(axis=(-2, -1))
    fp = confusion[..., 0, 1:].sum(axis=-1)
    fn = confusion[..., 1:, 0].sum(axis=-1)
    denominator = tp + fp + fn
    return np.where(denominator > 0, _ratio(tp, denominator), 1.0)[()]


def threshold_jaccard(jaccard: np.ndarray, threshold: float = ISIC_JACCARD_THRESHOLD) -> np.ndarray:
    """Set per-image Jaccard values below ``threshold`` to 0 (the ISIC 2018 rule); NaN stays NaN."""
    jaccard = np.asarray(jaccard, dtype=np.float64)
    return np.where(jaccard < threshold, 0.0, jaccard)[()]


def merged_iou_from_confusion(
    confusion: np.ndarray, groups: Mapping[str, Sequence[int]], annotated: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """IoU of merged classes (e.g. malignant = bcc + mel): a pixel counts as the group if its label is in it.

    Args:
        confusion: ``(C, C)`` or ``(N, C, C)`` confusion matrices.
        groups: group name -> label values merged into it.
        annotated: optional boolean mask; a group with an unannotated member is left out (NaN) for the case.

    Returns:
        group name -> IoU per case (NaN where the group is in neither mask).
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    num_classes = confusion.shape[-1]
    result = {}
    for name, values in groups.items():
        member = np.zeros(num_classes, dtype=bool)
        member[list(values)] = True
        tp = confusion[..., member, :][..., member].sum(axis=(-2, -1))
        fn = confusion[..., member, :][..., ~member].sum(axis=(-2, -1))
        fp = confusion[..., ~member, :][..., member].sum(axis=(-2, -1))
        denominator = tp + fp + fn
        iou = np.where(denominator > 0, _ratio(tp, denominator), np.nan)
        if annotated is not None:
            iou = np.where(np.asarray(annotated, dtype=bool)[..., member].all(axis=-1), iou, np.nan)
        result[name] = iou[()]
    return result


def share_at_least(values: np.ndarray, threshold: float) -> float:
    """Share of the non-NaN ``values`` that are at least ``threshold`` (NaN when none is defined)."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(np.mean(defined >= threshold)) if defined.size else float("nan")


def class_level_jaccard(class_iou: np.ndarray, threshold: float = ISIC_JACCARD_THRESHOLD) -> float:
    """Share of classes whose IoU is at least ``threshold`` (the HAM10000 class-level Jaccard score).

    Args:
        class_iou: one IoU per foreground class (e.g. the mean over cases); NaN classes (never present) are
            left out.
        threshold: the IoU a class must reach.

    Returns:
        the share of classes, in [0, 1].
    """
    return share_at_least(class_iou, threshold)


# ---- convenience wrappers on label maps -------------------------------------------------------------------


def dice_per_class(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, annotated: Iterable[int] | None = None
) -> np.ndarray:
    """Dice per class of one case's ``(H, W)`` label maps (background at index 0); see :func:`dice_from_confusion`."""
    return dice_from_confusion(confusion_matrix(pred, gt, num_classes), annotated_mask(annotated, num_classes))


def iou_per_class(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, annotated: Iterable[int] | None = None
) -> np.ndarray:
    """IoU per class of one case's ``(H, W)`` label maps; see :func:`iou_from_confusion`."""
    return iou_from_confusion(confusion_matrix(pred, gt, num_classes), annotated_mask(annotated, num_classes))


def pixel_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Share of pixels whose predicted label equals the ground truth (one case)."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    return float(np.mean(pred == gt))


def isic_jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """ISIC per-image Jaccard: foreground is label > 0; 1.0 when both masks are empty."""
    return float(binary_jaccard_from_confusion(confusion_matrix(np.asarray(pred) > 0, np.asarray(gt) > 0, 2)))


def isic_thresholded_jaccard(
    preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], threshold: float = ISIC_JACCARD_THRESHOLD
) -> float:
    """ISIC 2018 thresholded Jaccard over a set: per-image Jaccard, 0 below ``threshold``, averaged over images."""
    if len(preds) != len(gts) or not len(preds):
        raise ValueError(f"need the same, non-zero number of predictions and ground truths ({len(preds)}, {len(gts)})")
    return float(np.mean([threshold_jaccard(isic_jaccard(p, g), threshold) for p, g in zip(preds, gts, strict=True)]))
