"""Segmentation metrics: numpy functions on label maps, set-level evaluation, and MONAI metrics for engines.

The numpy parts (``scores``, ``confusion``, ``evaluation``) import no torch; the MONAI metrics
(``ClassDiceMetric``, ``ThresholdedJaccardMetric``, ...) and surface distances import torch and MONAI when
first used, so ``medseg evaluate`` starts fast.
"""

from __future__ import annotations

import importlib

from medseg.metrics.confusion import confusion_matrix
from medseg.metrics.evaluation import SegmentationScores, column_key, parse_merged_classes, score_label_maps
from medseg.metrics.scores import (
    ISIC_JACCARD_THRESHOLD,
    annotated_mask,
    background_accuracy_from_confusion,
    binary_jaccard_from_confusion,
    class_level_jaccard,
    dice_from_confusion,
    dice_per_class,
    foreground_recall_from_confusion,
    iou_from_confusion,
    iou_per_class,
    isic_jaccard,
    isic_thresholded_jaccard,
    merged_iou_from_confusion,
    nanmean,
    pixel_accuracy,
    pixel_accuracy_from_confusion,
    sensitivity_from_confusion,
    share_at_least,
    specificity_from_confusion,
    threshold_jaccard,
)

# name -> module, imported on first access (they need torch / MONAI)
_LAZY = {
    "ClassDiceMetric": "medseg.metrics.cumulative",
    "ClassIoUMetric": "medseg.metrics.cumulative",
    "ClassLevelJaccardMetric": "medseg.metrics.cumulative",
    "ConfusionCaseMetric": "medseg.metrics.cumulative",
    "LesionCoverageMetric": "medseg.metrics.cumulative",
    "MergedIoUMetric": "medseg.metrics.cumulative",
    "PixelAccuracyMetric": "medseg.metrics.cumulative",
    "ThresholdedJaccardMetric": "medseg.metrics.cumulative",
    "surface_distances_per_class": "medseg.metrics.distance",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medseg.metrics' has no attribute {name!r}")


__all__ = [
    "ISIC_JACCARD_THRESHOLD",
    "SegmentationScores",
    "annotated_mask",
    "background_accuracy_from_confusion",
    "binary_jaccard_from_confusion",
    "class_level_jaccard",
    "column_key",
    "confusion_matrix",
    "dice_from_confusion",
    "dice_per_class",
    "foreground_recall_from_confusion",
    "iou_from_confusion",
    "iou_per_class",
    "isic_jaccard",
    "isic_thresholded_jaccard",
    "merged_iou_from_confusion",
    "nanmean",
    "parse_merged_classes",
    "pixel_accuracy",
    "pixel_accuracy_from_confusion",
    "score_label_maps",
    "sensitivity_from_confusion",
    "share_at_least",
    "specificity_from_confusion",
    "threshold_jaccard",
    *_LAZY,
]
