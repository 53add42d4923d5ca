"""``SegmentationReport``: collect an evaluator's per-case label maps and write the ``medseg evaluate`` report.

Attach it to a MONAI ``SupervisedEvaluator`` (a bundle's ``evaluate.json``): at every iteration it keeps
the argmax'd prediction and label of each case (as ``uint8``) and a small ``uint8`` copy of the image for
overlays; at ``COMPLETED`` it scores them with :func:`medseg.metrics.score_label_maps` and writes
``per_case.csv``, ``summary.json``, ``report.html`` and ``report.md`` into ``output_dir``.

Case ids come from the batch's ``case_id`` key (datalist items carry one), else the label file name;
spacing from the batch's ``spacing`` key and annotated classes from ``annotated`` where present.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from medseg.metrics.evaluation import score_label_maps
from medseg.metrics.scores import ISIC_JACCARD_THRESHOLD
from medseg.transforms.labels import channel_argmax

logger = logging.getLogger(__name__)


def _items(data) -> list[dict]:
    """Per-case dicts from a decollated list or a batched dict."""
    if data is None:
        return []
    if isinstance(data, (list, tuple)):
        return [d if isinstance(d, Mapping) else {} for d in data]
    if isinstance(data, Mapping):
        batch = None
        for value in data.values():
            if isinstance(value, torch.Tensor) and value.ndim > 0:
                batch = value.shape[0]
                break
            if isinstance(value, (list, tuple)):
                batch = len(value)
                break
        if batch is None:
            return []
        out = []
        for i in range(batch):
            item = {}
            for key, value in data.items():
                try:
                    item[key] = value[i]
                except (TypeError, IndexError, KeyError):
                    item[key] = value
            out.append(item)
        return out
    return []


def _physical_spacing(tensor) -> list[float] | None:
    """Pixel spacing in mm of a MetaTensor loaded from NIfTI or DICOM (its affine follows every resize), else None.

    PNG/JPEG files carry no physical spacing (MONAI reports 1.0), so they give None and distances stay in pixels.
    """
    meta = getattr(tensor, "meta", None)
    if not meta or not hasattr(tensor, "pixdim"):
        return None
    source = str(meta.get("filename_or_obj", "")).lower()
    if not source.endswith((".nii", ".nii.gz", ".dcm", ".nrrd", ".mha")):
        return None
    return [float(v) for v in torch.as_tensor(tensor.pixdim).reshape(-1)[:2]]


def _annotated_values(annotated) -> list[int] | None:
    """The annotated foreground values: from a datalist list, or from ``AnnotatedMaskd``'s boolean class mask."""
    if annotated is None:
        return None
    values = torch.as_tensor(annotated).reshape(-1)
    if values.dtype == torch.bool:
        return [int(i) for i in torch.nonzero(values).reshape(-1) if i > 0]
    return [int(v) for v in values]


def _label_map(tensor) -> np.ndarray:
    """``(C, H, W)`` one-hot/probabilities or ``(1, H, W)`` labels -> ``(H, W)`` uint8 labels."""
    t = torch.as_tensor(tensor).detach().cpu()
    if t.ndim == 2:
        return t.numpy().astype(np.uint8)
    labels = channel_argmax(t, dim=0) if t.shape[0] > 1 else t[0].round()
    return labels.numpy().astype(np.uint8)


def _preview(tensor) -> np.ndarray | None:
    """``(C, H, W)`` image -> ``(H, W)`` or ``(H, W, 3)`` uint8 scaled to its own range."""
    if tensor is None:
        return None
    a = torch.as_tensor(tensor).detach().cpu().float().numpy()
    a = a[0] if a.shape[0] not in (3, 4) else np.moveaxis(a[:3], 0, -1)
    low, high = float(a.min()), float(a.max())
    return ((a - low) / (high - low) * 255).astype(np.uint8) if high > low else np.zeros(a.shape, np.uint8)


def _case_id(batch_item: Mapping, label, index: int) -> str:
    if batch_item.get("case_id") is not None:
        return str(batch_item["case_id"])
    meta = getattr(label, "meta", None) or {}
    filename = meta.get("filename_or_obj")
    if filename:
        return Path(str(filename)).name.split(".")[0]
    return f"case_{index:05d}"


class SegmentationReport:
    """Write the evaluation report of an evaluator's run.

    Args:
        output_dir: the report folder (replaced at every run; written via a staging folder).
        labels: class names by label value, background first (a datalist ``labels`` mapping or a list).
        pred_key: key of the (post-processed) prediction in ``engine.state.output``.
        label_key: key of the label.
        image_key: key of the image (for overlays); None to skip images.
        merged: merged classes, e.g. ``{"malignant": ["bcc", "mel"]}``.
        surface_distances: compute HD95/ASSD: True, False or ``"auto"`` (cardiac label names).
        iou_threshold: threshold of the thresholded and class-level Jaccard.
        n_examples: best and worst cases shown.
        title: the report's heading.
    """

    def __init__(
        self,
        output_dir: str | Path,
        labels: Mapping[str, str] | Sequence[str],
        pred_key: str = "pred",
        label_key: str = "label",
        image_key: str | None = "image",
        merged: Mapping[str, Sequence[int | str]] | None = None,
        surface_distances: bool | str = "auto",
        iou_threshold: float = ISIC_JACCARD_THRESHOLD,
        n_examples: int = 3,
        title: str = "Segmentation evaluation",
    ) -> None:
        self.output_dir = Path(output_dir)
        if isinstance(labels, Mapping):
            self.class_names = [str(labels[k]) for k in sorted(labels, key=int)]
        else:
            self.class_names = [str(n) for n in labels]
        self.pred_key, self.label_key, self.image_key = pred_key, label_key, image_key
        self.merged = merged
        self.surface_distances = surface_distances
        self.iou_threshold = iou_threshold
        self.n_examples = n_examples
        self.title = title
        self.summary: dict | None = None
        self.reset()

    def reset(self, engine=None) -> None:
        self.case_ids: list[str] = []
        self.preds: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.images: list[np.ndarray | None] = []
        self.spacings: list[tuple[float, float] | None] = []
        self.annotated: list[list[int] | None] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine) -> None:
        """Keep the label maps (and image previews) of the iteration's cases."""
        outputs = _items(engine.state.output)
        batch = _items(engine.state.batch)
        for i, output in enumerate(outputs):
            item = batch[i] if i < len(batch) else {}
            if self.pred_key not in output or self.label_key not in output:
                raise KeyError(
                    f"SegmentationReport: engine output lacks {self.pred_key!r} or {self.label_key!r} "
                    f"(has {sorted(output)}); set pred_key/label_key"
                )
            self.case_ids.append(_case_id(item, output[self.label_key], len(self.case_ids)))
            self.preds.append(_label_map(output[self.pred_key]))
            self.labels.append(_label_map(output[self.label_key]))
            self.images.append(_preview(output.get(self.image_key)) if self.image_key else None)
            # the label's own geometry first: a bundle resizes images, so the datalist's spacing no longer holds
            spacing = _physical_spacing(output[self.label_key])
            spacing = spacing if spacing is not None else item.get("spacing")
            if spacing is not None:
                values = [float(s) for s in torch.as_tensor(spacing).reshape(-1)[:2]]
                self.spacings.append((values[0], values[1]) if len(values) == 2 else None)
            else:
                self.spacings.append(None)
            self.annotated.append(_annotated_values(item.get("annotated")))

    def write(self, engine=None) -> dict | None:
        """Score the collected cases and write the report (only on the first process of a distributed run)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return None
        if not self.case_ids:
            logger.warning("SegmentationReport: no cases were collected; no report written to %s", self.output_dir)
            return None
        from medseg.reports import write_report

        num_classes = len(self.class_names)
        for case_id, pred, label in zip(self.case_ids, self.preds, self.labels, strict=True):
            if pred.max(initial=0) >= num_classes or label.max(initial=0) >= num_classes:
                raise ValueError(f"SegmentationReport: case {case_id} has label values beyond {self.class_names}")
        scores = score_label_maps(
            self.case_ids,
            self.preds,
            self.labels,
            self.class_names,
            spacings=self.spacings,
            annotated=self.annotated,
            merged=self.merged,
            surface_distances=self.surface_distances,
            iou_threshold=self.iou_threshold,
        )
        index = {case_id: i for i, case_id in enumerate(self.case_ids)}

        def load_case(case_id: str):
            i = index[case_id]
            return self.images[i], self.labels[i], self.preds[i]

        epoch = getattr(getattr(engine, "state", None), "epoch", None)
        context = {"source": "SegmentationReport handler", "epoch": epoch}
        self.summary = write_report(
            self.output_dir, scores, load_case, n_examples=self.n_examples, title=self.title, context=context
        )
        logger.info("SegmentationReport: %d cases, report written to %s", len(self.case_ids), self.output_dir)
        return self.summary
