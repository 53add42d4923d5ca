"""MONAI ``CumulativeIterationMetric``s for what MONAI lacks, plus Dice and IoU with medseg's empty-class rule.

All take ``y_pred`` and ``y`` as MONAI metrics do: batch-first, one-hot ``(B, C, H, W)`` or argmax'd
``(B, 1, H, W)`` label maps (then ``num_classes`` is needed). An optional ``annotated`` ``(B, C)`` boolean
tensor marks the classes scored per case; unannotated classes are left out like absent ones.

The scores that MONAI does not have are all functions of one confusion matrix per case, so they share
:class:`ConfusionCaseMetric`, which buffers ``(B, C*C)`` pixel counts and reduces them with the numpy
functions of :mod:`medseg.metrics.scores` (one definition for validation and for ``medseg evaluate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric, DiceMetric, MeanIoU

from medseg.metrics import scores as S
from medseg.transforms.labels import channel_argmax


def to_label_map(y: torch.Tensor, num_classes: int | None = None) -> tuple[torch.Tensor, int]:
    """Return ``(B, H, W)`` integer labels and the number of classes from one-hot or argmax'd input."""
    if y.ndim < 3:
        raise ValueError(f"expected a batch-first (B, C, H, W) tensor, got shape {tuple(y.shape)}")
    if y.shape[1] == 1:
        if num_classes is None:
            raise ValueError("argmax'd (B, 1, ...) input needs num_classes")
        return y[:, 0].long(), int(num_classes)
    return channel_argmax(y, dim=1), int(y.shape[1])


def _present_classes(y_pred: torch.Tensor, y: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """``(B, C)``: whether each class is in the prediction or the ground truth of each case."""
    pred, n = to_label_map(y_pred, num_classes)
    gt, _ = to_label_map(y, n)
    classes = torch.arange(n, device=pred.device).view(1, n, *([1] * (pred.ndim - 1)))
    either = (pred.unsqueeze(1) == classes) | (gt.unsqueeze(1) == classes)
    return either.flatten(2).any(dim=2)


def _leave_out(scores: torch.Tensor, keep: torch.Tensor, include_background: bool) -> torch.Tensor:
    if not include_background:
        keep = keep[:, 1:]
    return torch.where(keep.to(scores.device), scores, torch.full_like(scores, float("nan")))


class ClassDiceMetric(DiceMetric):
    """MONAI ``DiceMetric`` that leaves out (NaN) a class absent from both masks of a case, or not annotated.

    MONAI's ``ignore_empty=True`` also drops a class predicted where the ground truth is empty (a false
    positive that should score 0), and ``ignore_empty=False`` scores a doubly-empty class 1; medseg wants
    0 for the first and "left out" for the second, so this runs ``ignore_empty=False`` and masks the latter.

    Args:
        include_background: whether channel 0 is scored.
        reduction: MONAI reduction of ``aggregate`` (``mean_batch`` gives one value per class).
        get_not_nans: also return the number of non-NaN values.
        num_classes: needed for argmax'd input.
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: str = "mean_batch",
        get_not_nans: bool = False,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(
            include_background=include_background,
            reduction=reduction,
            get_not_nans=get_not_nans,
            ignore_empty=False,
            num_classes=num_classes,
        )

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, annotated: torch.Tensor | None = None):  # type: ignore[override]
        scores = super()._compute_tensor(y_pred, y)
        keep = _present_classes(y_pred, y, self.num_classes)
        if annotated is not None:
            keep = keep & torch.as_tensor(annotated, dtype=torch.bool, device=keep.device)
        return _leave_out(scores, keep, self.include_background)


class ClassIoUMetric(MeanIoU):
    """MONAI ``MeanIoU`` with the same empty-class and annotated-class rule as :class:`ClassDiceMetric`.

    Args:
        include_background: whether channel 0 is scored.
        reduction: MONAI reduction of ``aggregate``.
        get_not_nans: also return the number of non-NaN values.
        num_classes: needed for argmax'd input (MeanIoU itself wants one-hot; this converts).
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: str = "mean_batch",
        get_not_nans: bool = False,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(
            include_background=include_background, reduction=reduction, get_not_nans=get_not_nans, ignore_empty=False
        )
        self.num_classes = num_classes

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, annotated: torch.Tensor | None = None):  # type: ignore[override]
        from monai.networks.utils import one_hot

        keep = _present_classes(y_pred, y, self.num_classes)
        n = keep.shape[1]
        if y_pred.shape[1] == 1:
            y_pred = one_hot(y_pred.long(), num_classes=n)
        if y.shape[1] == 1:
            y = one_hot(y.long(), num_classes=n)
        scores = super()._compute_tensor(y_pred, y)
        if annotated is not None:
            keep = keep & torch.as_tensor(annotated, dtype=torch.bool, device=keep.device)
        return _leave_out(scores, keep, self.include_background)


class ConfusionCaseMetric(CumulativeIterationMetric):
    """Buffers one confusion matrix per case; subclasses turn the stack into a score in :meth:`reduce`.

    Args:
        num_classes: number of label values; inferred from one-hot input when None.
    """

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, annotated: torch.Tensor | None = None):  # type: ignore[override]
        pred, n = to_label_map(y_pred, self.num_classes)
        gt, _ = to_label_map(y, n)
        if pred.shape != gt.shape:
            raise ValueError(f"y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)} differ in size")
        batch = pred.shape[0]
        offset = torch.arange(batch, device=pred.device).view(batch, *([1] * (pred.ndim - 1))) * n * n
        index = (offset + gt * n + pred).reshape(-1)
        counts = torch.bincount(index, minlength=batch * n * n).reshape(batch, n * n).float()
        if annotated is None:
            annotated = torch.ones((batch, n), dtype=torch.bool, device=counts.device)
        # one row per case: the flattened confusion matrix, then the annotated mask
        return torch.cat([counts, torch.as_tensor(annotated, device=counts.device).float()], dim=1)

    def _stacked(self) -> tuple[np.ndarray, np.ndarray]:
        buffer = self.get_buffer()
        if isinstance(buffer, (list, tuple)):
            buffer = torch.cat([torch.as_tensor(b) for b in buffer], dim=0) if buffer else torch.zeros((0, 0))
        data = buffer.detach().cpu().numpy()
        if data.size == 0:
            raise ValueError(f"{type(self).__name__}: nothing to aggregate; call it on at least one batch first")
        # a row holds n*n counts and n flags: solve n*n + n = width
        n = int(round((-1 + np.sqrt(1 + 4 * data.shape[1])) / 2))
        confusion = data[:, : n * n].round().astype(np.int64).reshape(-1, n, n)
        return confusion, data[:, n * n :] > 0.5

    def aggregate(self):  # type: ignore[override]
        confusion, annotated = self._stacked()
        return torch.as_tensor(np.asarray(self.reduce(confusion, annotated), dtype=np.float32))

    def reduce(self, confusion: np.ndarray, annotated: np.ndarray):
        """Return the score (a float or a 1D array) of the ``(N, C, C)`` confusion stack."""
        raise NotImplementedError


class ThresholdedJaccardMetric(ConfusionCaseMetric):
    """ISIC 2018 thresholded Jaccard (or, with ``thresholded=False``, the plain mean per-image Jaccard).

    Foreground is label > 0; an image with both masks empty scores 1.0.

    Args:
        threshold: per-image Jaccard values below it count 0.
        thresholded: False for the plain mean Jaccard.
        num_classes: needed for argmax'd input.
    """

    def __init__(
        self, threshold: float = S.ISIC_JACCARD_THRESHOLD, thresholded: bool = True, num_classes: int | None = None
    ) -> None:
        super().__init__(num_classes)
        self.threshold = threshold
        self.thresholded = thresholded

    def reduce(self, confusion, annotated):
        jaccard = np.asarray(S.binary_jaccard_from_confusion(confusion), dtype=np.float64)
        if self.thresholded:
            jaccard = S.threshold_jaccard(jaccard, self.threshold)
        return S.nanmean(jaccard)


class PixelAccuracyMetric(ConfusionCaseMetric):
    """PixSim (mean share of right pixels), or N_90 (share of images with at least ``min_accuracy`` right).

    Args:
        baseline: score an all-background prediction instead (PixSim_black, N_90_black).
        min_accuracy: None for PixSim; e.g. 0.9 for N_90.
        num_classes: needed for argmax'd input.
    """

    def __init__(self, baseline: bool = False, min_accuracy: float | None = None, num_classes: int | None = None):
        super().__init__(num_classes)
        self.baseline = baseline
        self.min_accuracy = min_accuracy

    def reduce(self, confusion, annotated):
        fn = S.background_accuracy_from_confusion if self.baseline else S.pixel_accuracy_from_confusion
        accuracy = np.asarray(fn(confusion), dtype=np.float64)
        return S.nanmean(accuracy) if self.min_accuracy is None else S.share_at_least(accuracy, self.min_accuracy)


class LesionCoverageMetric(ConfusionCaseMetric):
    """N_lesion: share of images with at least ``min_share`` of ground-truth foreground predicted right.

    Images without ground-truth foreground are left out.

    Args:
        min_share: 0.9 for N_lesion_90, 0.5 for N_lesion_50.
        num_classes: needed for argmax'd input.
    """

    def __init__(self, min_share: float = 0.9, num_classes: int | None = None):
        super().__init__(num_classes)
        self.min_share = min_share

    def reduce(self, confusion, annotated):
        return S.share_at_least(S.foreground_recall_from_confusion(confusion, annotated), self.min_share)


class ClassLevelJaccardMetric(ConfusionCaseMetric):
    """Share of foreground classes whose IoU (mean over the cases that score it) is at least ``threshold``.

    Args:
        threshold: the IoU a class must reach (0.65 for HAM10000).
        num_classes: needed for argmax'd input.
    """

    def __init__(self, threshold: float = S.ISIC_JACCARD_THRESHOLD, num_classes: int | None = None):
        super().__init__(num_classes)
        self.threshold = threshold

    def reduce(self, confusion, annotated):
        class_iou = S.nanmean(S.iou_from_confusion(confusion, annotated)[:, 1:], axis=0)
        return S.class_level_jaccard(np.atleast_1d(class_iou), self.threshold)


class MergedIoUMetric(ConfusionCaseMetric):
    """IoU of merged classes (e.g. ``{"malignant": [2, 4]}``), averaged over the cases where a group is present.

    Args:
        groups: group name -> label values; ``aggregate`` returns one value per group, in this order.
        num_classes: needed for argmax'd input.
    """

    def __init__(self, groups: Mapping[str, Sequence[int]], num_classes: int | None = None):
        super().__init__(num_classes)
        if not groups:
            raise ValueError("MergedIoUMetric needs at least one group, e.g. {'malignant': [2, 4]}")
        self.groups = {str(k): [int(v) for v in vs] for k, vs in groups.items()}

    def reduce(self, confusion, annotated):
        merged = S.merged_iou_from_confusion(confusion, self.groups, annotated)
        return np.array([S.nanmean(merged[name]) for name in self.groups])
