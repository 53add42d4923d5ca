"""Per-case confusion matrices of integer label maps: the one pass over the pixels every score is built on."""

from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Count pixels by (ground-truth label, predicted label), per case.

    One ``np.bincount`` over the whole batch, so scoring hundreds of cases costs one pass over their pixels.

    Args:
        pred: predicted label map ``(H, W)`` or a batch ``(B, H, W)`` (any spatial shape after the batch axis).
        gt: ground-truth label map of the same shape.
        num_classes: number of label values (background included); values must be in ``0..num_classes-1``.

    Returns:
        ``(C, C)`` counts for one case, or ``(B, C, C)`` for a batch; entry ``[g, p]`` counts pixels whose
        ground truth is ``g`` and prediction ``p``.

    Raises:
        ValueError: shapes differ, or a value is outside ``0..num_classes-1``.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    for name, arr in (("prediction", pred), ("ground truth", gt)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} has label values outside 0..{num_classes - 1}")
    single = pred.ndim == 2
    batch = 1 if single else pred.shape[0]
    pixels_per_case = pred.size // max(batch, 1)
    case_offset = np.repeat(np.arange(batch, dtype=np.int64) * num_classes * num_classes, pixels_per_case)
    index = case_offset + gt.reshape(-1).astype(np.int64) * num_classes + pred.reshape(-1).astype(np.int64)
    counts = np.bincount(index, minlength=batch * num_classes * num_classes).reshape(batch, num_classes, num_classes)
    return counts[0] if single else counts
