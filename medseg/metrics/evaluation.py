"""Score a set of cases with every metric and lay the results out as per-case rows and a set summary.

This is what ``medseg evaluate`` and the :class:`medseg.handlers.SegmentationReport` handler share: given
label maps (and optionally spacing and the annotated classes per case) it builds one confusion matrix per
case, derives every overlap score from the stack of them at once, and adds surface distances when asked.
Every summary number is the NaN-skipping mean of one per-case column (named in ``summary["columns"]``),
except the class-level Jaccard, which is computed from the per-class mean IoU.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from medseg.metrics import scores as S
from medseg.metrics.confusion import confusion_matrix

# names a label must contain for "auto" to compute surface distances (cardiac structures)
CARDIAC_LABEL_WORDS = ("ventricle", "myocard", "rv", "lv", "atrium")

# summary metric -> (per-case column, what it is)
SET_METRICS: dict[str, tuple[str, str]] = {
    "mean_dice": ("mean_dice", "Dice averaged over the foreground classes present in each case, then over cases"),
    "mean_iou": ("mean_iou", "IoU averaged over the foreground classes present in each case, then over cases"),
    "jaccard_mean": ("jaccard", "plain per-image Jaccard of foreground (label > 0), averaged over images"),
    "thresholded_jaccard": ("thresholded_jaccard", "ISIC 2018 score: per-image Jaccard, 0 below the threshold"),
    "PixSim": ("pixsim", "share of pixels predicted right, averaged over images"),
    "PixSim_black": ("pixsim_black", "PixSim of an all-background prediction (the baseline to beat)"),
    "N_90": ("n_90", "share of images with at least 90% of pixels right"),
    "N_90_black": ("n_90_black", "N_90 of an all-background prediction"),
    "N_lesion_90": ("n_lesion_90", "share of images with >= 90% of ground-truth foreground pixels right"),
    "N_lesion_50": ("n_lesion_50", "share of images with >= 50% of ground-truth foreground pixels right"),
    "lesion_recall": ("lesion_recall", "share of ground-truth foreground pixels predicted right, per image"),
}


def column_key(name: str) -> str:
    """A label name as used in column and metric keys: runs of characters other than letters, digits, ``-``
    and ``.`` become ``_`` (``right ventricle`` -> ``right_ventricle``)."""
    return re.sub(r"[^0-9A-Za-z.\-]+", "_", str(name)).strip("_") or "class"


def cardiac_labels(class_names: Sequence[str]) -> bool:
    """Whether label names look like cardiac structures (surface distances are then computed by default)."""
    words = [name.lower().replace("_", " ") for name in class_names[1:]]
    return any(w in name.split() or (len(w) > 2 and w in name) for name in words for w in CARDIAC_LABEL_WORDS)


def parse_merged_classes(
    spec: Mapping[str, Sequence[int | str]] | Iterable[str] | None, class_names: Sequence[str]
) -> dict[str, list[int]]:
    """Read merged-class groups from a config mapping or ``NAME=a+b`` strings; members by value or name.

    Args:
        spec: ``{"malignant": ["bcc", "mel"]}``, ``["malignant=bcc+mel"]`` or None.
        class_names: label names by value.

    Returns:
        group name -> sorted label values.

    Raises:
        ValueError: a member is neither a label value nor a label name, or the string is malformed.
    """
    if not spec:
        return {}
    if not isinstance(spec, Mapping):
        parsed = {}
        for text in spec:
            name, sep, members = str(text).partition("=")
            if not sep or not name.strip() or not members.strip():
                raise ValueError(f"merged class {text!r}: write it as NAME=a+b (label names or values)")
            parsed[name.strip()] = [m.strip() for m in members.split("+")]
        spec = parsed
    lookup = {name.lower(): value for value, name in enumerate(class_names)}
    groups = {}
    for name, members in spec.items():
        values = set()
        for member in members:
            text = str(member).strip()
            if text.lower() in lookup:
                values.add(lookup[text.lower()])
            elif text.isdigit() and 0 < int(text) < len(class_names):
                values.add(int(text))
            else:
                raise ValueError(
                    f"merged class {name!r}: {text!r} is not a foreground label (labels: {list(class_names)})"
                )
        groups[str(name)] = sorted(values)
    return groups


@dataclass
class SegmentationScores:
    """Every score of a set of cases.

    Args:
        case_ids: the cases, in order.
        class_names: label names by value (index 0 is background).
        confusion: ``(N, C, C)`` confusion matrices.
        annotated: ``(N, C)`` boolean mask of the classes scored per case.
        hd95: ``(N, C)`` 95th-percentile Hausdorff distance, or None when not computed.
        assd: ``(N, C)`` average symmetric surface distance, or None.
        distance_unit: ``mm`` when every case had a spacing, else ``px``.
        merged: merged class name -> label values.
        iou_threshold: threshold of the thresholded and class-level Jaccard.
        missing: case ids without prediction (scored only with ``--allow_missing``).
    """

    case_ids: list[str]
    class_names: list[str]
    confusion: np.ndarray
    annotated: np.ndarray
    hd95: np.ndarray | None = None
    assd: np.ndarray | None = None
    distance_unit: str = "px"
    merged: dict[str, list[int]] = field(default_factory=dict)
    iou_threshold: float = S.ISIC_JACCARD_THRESHOLD
    missing: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def per_class(self) -> dict[str, np.ndarray]:
        """Per-case, per-class score arrays ``(N, C)``: dice, iou, sensitivity, specificity (and distances)."""
        out = {
            "dice": S.dice_from_confusion(self.confusion, self.annotated),
            "iou": S.iou_from_confusion(self.confusion, self.annotated),
            "sensitivity": S.sensitivity_from_confusion(self.confusion, self.annotated),
            "specificity": S.specificity_from_confusion(self.confusion, self.annotated),
        }
        if self.hd95 is not None:
            out["hd95"] = self.hd95
        if self.assd is not None:
            out["assd"] = self.assd
        return out

    def per_case_columns(self) -> dict[str, np.ndarray]:
        """Column name -> ``(N,)`` values: one column per metric and class (the ``per_case.csv`` layout)."""
        per_class = self.per_class()
        columns: dict[str, np.ndarray] = {}
        for metric, values in per_class.items():
            for c in range(1, self.num_classes):
                columns[f"{metric}_{column_key(self.class_names[c])}"] = values[:, c]
        columns["mean_dice"] = S.nanmean(per_class["dice"][:, 1:], axis=1)
        columns["mean_iou"] = S.nanmean(per_class["iou"][:, 1:], axis=1)
        if self.hd95 is not None:
            columns["mean_hd95"] = S.nanmean(self.hd95[:, 1:], axis=1)
        jaccard = np.asarray(S.binary_jaccard_from_confusion(self.confusion), dtype=np.float64)
        columns["jaccard"] = jaccard
        columns["thresholded_jaccard"] = S.threshold_jaccard(jaccard, self.iou_threshold)
        pixsim = np.asarray(S.pixel_accuracy_from_confusion(self.confusion), dtype=np.float64)
        black = np.asarray(S.background_accuracy_from_confusion(self.confusion), dtype=np.float64)
        columns["pixsim"] = pixsim
        columns["pixsim_black"] = black
        columns["n_90"] = (pixsim >= 0.9).astype(np.float64)
        columns["n_90_black"] = (black >= 0.9).astype(np.float64)
        recall = np.asarray(S.foreground_recall_from_confusion(self.confusion, self.annotated), dtype=np.float64)
        columns["lesion_recall"] = recall
        # images without ground-truth foreground have no lesion to find: left out (NaN), not counted
        columns["n_lesion_90"] = np.where(np.isnan(recall), np.nan, recall >= 0.9)
        columns["n_lesion_50"] = np.where(np.isnan(recall), np.nan, recall >= 0.5)
        for name, values in S.merged_iou_from_confusion(self.confusion, self.merged, self.annotated).items():
            columns[f"iou_{column_key(name)}"] = np.asarray(values, dtype=np.float64).reshape(-1)
        return columns

    def per_case_rows(self) -> list[dict]:
        """One dict per case: ``case_id`` then every column (floats; NaN where undefined)."""
        columns = self.per_case_columns()
        return [
            {"case_id": case_id, **{name: float(values[i]) for name, values in columns.items()}}
            for i, case_id in enumerate(self.case_ids)
        ]

    def summary(self) -> dict:
        """Every metric over the set, per-class tables and how each number was computed (JSON-ready)."""
        columns = self.per_case_columns()
        per_class = self.per_class()
        total_gt = self.confusion.sum(axis=(0, 2)).astype(np.float64)
        total_pred = self.confusion.sum(axis=(0, 1)).astype(np.float64)
        table = {}
        for c, name in enumerate(self.class_names):
            row = {"value": c}
            for metric, values in per_class.items():
                row[metric] = _json_float(S.nanmean(values[:, c]))
                row[f"{metric}_std"] = _json_float(np.nanstd(values[:, c]) if np.any(~np.isnan(values[:, c])) else None)
            row["n_cases_scored"] = int(np.sum(~np.isnan(per_class["dice"][:, c])))
            row["n_cases_present"] = int(np.sum(self.confusion[:, c, :].sum(axis=1) > 0))
            row["gt_pixel_frequency"] = _json_float(total_gt[c] / max(total_gt.sum(), 1))
            row["pred_pixel_frequency"] = _json_float(total_pred[c] / max(total_pred.sum(), 1))
            table[name] = row
        metrics = {key: _json_float(S.nanmean(columns[column])) for key, (column, _) in SET_METRICS.items()}
        class_iou = np.array(
            [table[name]["iou"] if table[name]["iou"] is not None else np.nan for name in self.class_names[1:]],
            dtype=np.float64,
        )
        metrics["class_level_jaccard"] = _json_float(S.class_level_jaccard(class_iou, self.iou_threshold))
        columns_used = {key: column for key, (column, _) in SET_METRICS.items()}
        if self.hd95 is not None:
            metrics["mean_hd95"] = _json_float(S.nanmean(columns["mean_hd95"]))
            columns_used["mean_hd95"] = "mean_hd95"
        for name in self.merged:
            key = f"iou_{column_key(name)}"
            metrics[key] = _json_float(S.nanmean(columns[key]))
            columns_used[key] = key
        return {
            "n_cases": len(self.case_ids),
            "complete": not self.missing,
            "missing_cases": list(self.missing),
            "labels": {str(c): name for c, name in enumerate(self.class_names)},
            "metrics": metrics,
            "per_class": table,
            "merged_classes": {
                name: {"values": values, "iou": metrics[f"iou_{column_key(name)}"]}
                for name, values in self.merged.items()
            },
            "distance_unit": self.distance_unit if self.hd95 is not None else None,
            "iou_threshold": self.iou_threshold,
            "columns": columns_used,
            "definitions": {key: text for key, (_, text) in SET_METRICS.items()}
            | {
                "class_level_jaccard": f"share of foreground classes whose mean IoU is >= {self.iou_threshold}",
                "mean_hd95": f"95th-percentile Hausdorff distance ({self.distance_unit}) averaged over the "
                "foreground classes of each case, then over cases",
            }
            | {f"iou_{column_key(n)}": f"IoU of the merged class {n} (labels {v})" for n, v in self.merged.items()},
        }


def _json_float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def score_label_maps(
    case_ids: Sequence[str],
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    class_names: Sequence[str],
    spacings: Sequence[Sequence[float] | None] | None = None,
    annotated: Sequence[Iterable[int] | None] | None = None,
    merged: Mapping[str, Sequence[int | str]] | Iterable[str] | None = None,
    surface_distances: bool | str = "auto",
    iou_threshold: float = S.ISIC_JACCARD_THRESHOLD,
    missing: Sequence[str] = (),
) -> SegmentationScores:
    """Score every case.

    Args:
        case_ids: case ids, one per label map.
        preds: predicted ``(H, W)`` integer label maps with values in ``0..C-1``.
        gts: ground-truth label maps, each the shape of its prediction.
        class_names: label names by value, background first.
        spacings: per case (row, column) mm, or None.
        annotated: per case the annotated foreground values (datalist ``annotated``), or None for all.
        merged: merged classes (see :func:`parse_merged_classes`).
        surface_distances: compute HD95 and ASSD: True, False or ``"auto"`` (for cardiac label names).
        iou_threshold: threshold of the thresholded and the class-level Jaccard.
        missing: case ids that had no prediction, recorded in the summary.

    Returns:
        the scores.

    Raises:
        ValueError: lengths differ, or a prediction's shape differs from its ground truth (naming the case).
    """
    n = len(case_ids)
    if not (len(preds) == len(gts) == n):
        raise ValueError(f"need one prediction and one ground truth per case ({n} cases)")
    num_classes = len(class_names)
    spacings = list(spacings) if spacings is not None else [None] * n
    annotated_list = list(annotated) if annotated is not None else [None] * n
    confusion = np.zeros((n, num_classes, num_classes), dtype=np.int64)
    for i, (case_id, pred, gt) in enumerate(zip(case_ids, preds, gts, strict=True)):
        if np.shape(pred) != np.shape(gt):
            raise ValueError(
                f"case {case_id}: prediction is {np.shape(pred)} but ground truth is {np.shape(gt)}; "
                "predictions must have the size of their ground truth"
            )
        confusion[i] = confusion_matrix(pred, gt, num_classes)
    annotated_masks = (
        np.stack([S.annotated_mask(a, num_classes) for a in annotated_list]) if n else np.ones((0, num_classes), bool)
    )
    if surface_distances == "auto":
        surface_distances = cardiac_labels(class_names)
    hd95 = assd = None
    unit = "px"
    if surface_distances:
        from medseg.metrics.distance import surface_distances_per_class

        hd95 = np.full((n, num_classes), np.nan)
        assd = np.full((n, num_classes), np.nan)
        for i in range(n):
            hd95[i], assd[i] = surface_distances_per_class(
                preds[i], gts[i], num_classes, spacing=spacings[i], annotated=annotated_masks[i]
            )
        unit = "mm" if n and all(s is not None for s in spacings) else "px"
    return SegmentationScores(
        case_ids=list(case_ids),
        class_names=list(class_names),
        confusion=confusion,
        annotated=annotated_masks,
        hd95=hd95,
        assd=assd,
        distance_unit=unit,
        merged=parse_merged_classes(merged, class_names),
        iou_threshold=iou_threshold,
        missing=list(missing),
    )
