"""Post-processing chosen on validation data, as nnU-Net does.

For each foreground class, two operations on the predicted label map are tried in turn:

* ``largest_component``: keep only the largest connected region of the class (the rest becomes background),
  with MONAI's ``KeepLargestConnectedComponent``;
* ``fill_holes``: give the class every pixel it fully encloses, with MONAI's ``FillHoles`` (this overwrites
  other classes inside it: for a myocardium ring it would swallow the left ventricle, and is then refused).

An operation is kept only if it raises the mean foreground Dice over the validation cases (and, when asked,
the ISIC thresholded Jaccard) without lowering any of the chosen scores. The decision is a small
JSON-serialisable dict that :func:`apply_postprocessing` and :class:`ApplyPostprocessingd` apply to new
predictions::

    {"classes": {"1": {"largest_component": true, "fill_holes": true}},
     "metrics": ["dice", "thresholded_jaccard"],
     "scores": {"before": {...}, "after": {...}}}
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.metrics import ISIC_JACCARD_THRESHOLD, dice_per_class, isic_jaccard, nanmean, threshold_jaccard

OPERATIONS = ("largest_component", "fill_holes")
METRICS = ("dice", "thresholded_jaccard")


def _score(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_classes: int, metrics) -> dict:
    """Mean Dice per foreground class over cases (NaN cases skipped), their mean, and the thresholded Jaccard."""
    dice = np.stack([dice_per_class(p, g, num_classes) for p, g in zip(predictions, labels, strict=True)])
    per_class = nanmean(dice[:, 1:], axis=0)
    scores = {"mean_dice": nanmean(per_class), "dice": {str(c): float(per_class[c - 1]) for c in range(1, num_classes)}}
    if "thresholded_jaccard" in metrics:
        jaccards = [
            threshold_jaccard(isic_jaccard(p, g), ISIC_JACCARD_THRESHOLD)
            for p, g in zip(predictions, labels, strict=True)
        ]
        scores["thresholded_jaccard"] = float(np.mean(jaccards))
    return scores


def _key_scores(scores: dict, metrics) -> list[float]:
    return [scores["mean_dice"] if m == "dice" else scores[m] for m in metrics]


def _apply_one(label_map: np.ndarray, label: int, operation: str) -> np.ndarray:
    from monai.transforms import FillHoles, KeepLargestConnectedComponent

    if operation == "largest_component":
        transform = KeepLargestConnectedComponent(applied_labels=[label], is_onehot=False, independent=True)
    else:
        transform = FillHoles(applied_labels=[label])
    # a copy: MONAI's FillHoles writes into the array it is given, and the caller's maps must stay as they are
    out = transform(np.array(label_map, copy=True)[None])
    return np.asarray(out)[0].astype(np.asarray(label_map).dtype, copy=False)


def check_decision(decision: Mapping, source: str = "post-processing decision") -> dict[int, dict[str, bool]]:
    """Validate a decision and return ``{label: {operation: bool}}``.

    Raises:
        ValueError: not a dict with a ``classes`` mapping of label -> ``{operation: true|false}`` (one line).
    """
    classes = decision.get("classes") if isinstance(decision, Mapping) else None
    if not isinstance(classes, Mapping):
        raise ValueError(f"{source}: expected a JSON object with a 'classes' object (label -> operations)")
    parsed: dict[int, dict[str, bool]] = {}
    for key, ops in classes.items():
        if not str(key).isdigit() or int(key) < 1:
            raise ValueError(f"{source}: class key {key!r} must be a foreground label value (1, 2, ...)")
        well_formed = isinstance(ops, Mapping) and not set(ops) - set(OPERATIONS)
        if not well_formed or not all(isinstance(v, bool) for v in ops.values()):
            raise ValueError(f"{source}: class {key} must map each of {OPERATIONS} to true or false, got {ops!r}")
        parsed[int(key)] = {op: bool(ops.get(op, False)) for op in OPERATIONS}
    return parsed


def apply_postprocessing(pred_index_map: np.ndarray, decision: Mapping) -> np.ndarray:
    """Apply a decision to one predicted label map (``(H, W)``, ``(1, H, W)`` or 3D), returning a new array.

    Operations run class by class in label order, largest component before hole filling, as they were chosen.
    """
    array = np.asarray(pred_index_map)
    out = array.copy()
    squeeze = out.ndim >= 1 and out.shape[0] == 1 and out.ndim > 2
    if squeeze:
        out = out[0]
    for label, ops in sorted(check_decision(decision).items()):
        for op in OPERATIONS:
            if ops[op]:
                out = _apply_one(out, label, op)
    return out[None] if squeeze else out


def choose_postprocessing(
    predictions: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    num_classes: int,
    metrics: Sequence[str] = ("dice",),
    min_gain: float = 0.0,
) -> dict:
    """Choose, per foreground class, largest-component and hole filling on validation predictions.

    Each class and operation is tried on top of the choices already made; it is kept when every score in
    ``metrics`` is at least as high as before and one rises by more than ``min_gain``.

    Args:
        predictions: predicted integer label maps (e.g. the out-of-fold predictions of a cross-validation).
        labels: ground-truth label maps, same shapes.
        num_classes: number of label values, background included.
        metrics: ``"dice"`` (mean foreground Dice) and/or ``"thresholded_jaccard"`` (ISIC, foreground = label > 0).
        min_gain: the smallest rise that counts as an improvement.

    Returns:
        the JSON-serialisable decision (``classes``, ``metrics``, ``scores`` before and after).

    Raises:
        ValueError: no cases, unequal counts or shapes, a bad ``num_classes`` or metric name.
    """
    if not len(predictions) or len(predictions) != len(labels):
        raise ValueError(f"choose_postprocessing: need the same, non-zero number of predictions and labels "
                         f"({len(predictions)}, {len(labels)})")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"choose_postprocessing: num_classes must be an integer >= 2, got {num_classes!r}")
    unknown = set(metrics) - set(METRICS)
    if not metrics or unknown:
        raise ValueError(f"choose_postprocessing: metrics must be taken from {METRICS}, got {list(metrics)}")
    preds = [np.asarray(p) for p in predictions]
    gts = [np.asarray(g) for g in labels]
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        if p.shape != g.shape:
            raise ValueError(f"choose_postprocessing: case {i}: prediction {p.shape} and label {g.shape} differ")
    before = _score(preds, gts, num_classes, metrics)
    best, current = before, preds
    classes: dict[str, dict[str, bool]] = {}
    for label in range(1, num_classes):
        classes[str(label)] = {}
        for op in OPERATIONS:
            candidate = [_apply_one(p, label, op) for p in current]
            scores = _score(candidate, gts, num_classes, metrics)
            new, old = _key_scores(scores, metrics), _key_scores(best, metrics)
            pairs = list(zip(new, old, strict=True))
            keep = all(n >= o for n, o in pairs) and any(n > o + min_gain for n, o in pairs)
            classes[str(label)][op] = bool(keep)
            if keep:
                best, current = scores, candidate
    return {"classes": classes, "metrics": list(metrics), "scores": {"before": before, "after": best}}


def index_map(value: Any) -> np.ndarray:
    """A ``(H, W)`` ``uint8`` label map from one case's channel-first prediction or label: the argmax of a one-hot
    or probability map with several channels, the single channel of a ``(1, H, W)`` map (tensor or array)."""
    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    return (array.argmax(0) if array.shape[0] > 1 else array[0]).astype(np.uint8)


def describe_decision(decision: Mapping) -> str:
    """One line for people: ``class 1: largest component, fill holes; class 2: none``."""
    parts = []
    for label, ops in sorted(check_decision(decision).items()):
        kept = [op.replace("_", " ") for op in OPERATIONS if ops[op]]
        parts.append(f"class {label}: {', '.join(kept) or 'none'}")
    return "; ".join(parts) or "no classes"


def write_decision(decision: Mapping, path: str | Path) -> Path:
    """Write a decision as JSON, whole or not at all (a temporary file renamed into place)."""
    from medseg.io import write_json

    check_decision(decision, str(path))
    return write_json(decision, path)


def load_decision(decision: Mapping | str | Path) -> dict:
    """Return a decision given inline or as the path of a JSON file (checked, one-line errors)."""
    if isinstance(decision, (str, Path)):
        path = Path(decision)
        if not path.is_file():
            raise ValueError(f"post-processing decision file {path} not found; run the validation step that writes it")
        try:
            loaded = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"post-processing decision file {path} is not valid JSON ({exc.msg}, line {exc.lineno})"
            ) from None
        check_decision(loaded, str(path))
        return loaded
    check_decision(decision)
    return dict(decision)


DECISION_FILE = "postprocessing.json"


def decision_file(checkpoint_name: str) -> str:
    """The name of the decision file that goes with a checkpoint file name: ``postprocessing.json`` for the kept
    ``model.pt``, ``<stem>.postprocessing.json`` for another (``model_best.pt`` -> ``model_best.postprocessing.json``),
    whose decision was chosen on its own epoch (:class:`medseg.handlers.ChoosePostprocessing`)."""
    from medseg.bundle.checkpoint import KEPT_CHECKPOINT

    return DECISION_FILE if checkpoint_name == KEPT_CHECKPOINT else f"{Path(checkpoint_name).stem}.{DECISION_FILE}"


def decision_beside(checkpoint: str | Path) -> str | None:
    """The decision file training wrote beside ``checkpoint`` (:func:`decision_file`; failing that, the run's
    ``postprocessing.json``), or None if there is none.

    Configs use it as ``"postprocessing_decision": "$medseg.postprocessing.decision_beside(@ckpt_path)"``.
    """
    checkpoint = Path(checkpoint)
    for path in (checkpoint.parent / decision_file(checkpoint.name), checkpoint.parent / DECISION_FILE):
        if path.is_file():
            return str(path)
    return None


def _transform_base():
    from monai.transforms import MapTransform

    return MapTransform


class ApplyPostprocessingd(_transform_base()):
    """Dictionary transform that applies a post-processing decision to label maps (channel-first ``(1, H, W)``).

    Put it after ``AsDiscreted(argmax=True)`` and before any one-hot conversion. The type (numpy or tensor,
    MetaTensor metadata included) of each item is kept.

    Args:
        keys: keys of the label maps.
        decision: the decision dict, the path of its JSON file, or None (no decision: the transform does nothing).
        allow_missing_keys: do not fail when a key is absent.
    """

    def __init__(self, keys, decision: Mapping | str | Path | None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.decision = load_decision(decision) if decision is not None else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import torch
        from monai.utils import convert_to_dst_type

        d = dict(data)
        if self.decision is None:  # no decision made (yet): nothing to apply
            return d
        for key in self.key_iterator(d):
            item = d[key]
            array = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
            if array.ndim < 3 or array.shape[0] != 1:
                raise ValueError(f"ApplyPostprocessingd: '{key}' must be a (1, H, W) label map (argmax first), "
                                 f"got shape {tuple(array.shape)}")
            d[key] = convert_to_dst_type(apply_postprocessing(array, self.decision), item)[0]
        return d
