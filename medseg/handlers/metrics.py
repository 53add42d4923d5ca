"""Ignite metric handlers (MONAI style) that log medseg's segmentation scores per epoch.

Each wraps a MONAI ``CumulativeIterationMetric`` the way ``monai.handlers.MeanDice`` wraps ``DiceMetric``
and takes ``output_transform=monai.handlers.from_engine(["pred", "label"])`` with one-hot (or argmax'd)
predictions and labels. Handlers with one value per class (or per merged group) put the mean under their
own name, so it can be a ``key_val_metric``, and each value under ``<name>_<class>``: a ``ClassDice``
attached as ``val_dice`` logs ``val_dice``, ``val_dice_lesion``, ... in ``engine.state.metrics``.

An ``output_transform`` may return a third element, a ``(B, C)`` boolean tensor of the classes annotated
per case (e.g. ``from_engine(["pred", "label", "annotated"])`` after a transform that builds it); classes
not annotated for a case are left out of its scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import HausdorffDistanceMetric

from medseg.metrics.cumulative import (
    ClassDiceMetric,
    ClassIoUMetric,
    ClassLevelJaccardMetric,
    LesionCoverageMetric,
    MergedIoUMetric,
    PixelAccuracyMetric,
    ThresholdedJaccardMetric,
)
from medseg.metrics.evaluation import column_key
from medseg.metrics.scores import ISIC_JACCARD_THRESHOLD, nanmean


def _identity(x):
    return x


def label_names(labels: Mapping[str, str] | Sequence[str] | None, include_background: bool, num: int | None = None):
    """Class names by channel: from a datalist ``labels`` mapping or a list (background first)."""
    if labels is None:
        return None
    if isinstance(labels, Mapping):
        names = [str(labels[k]) for k in sorted(labels, key=int)]
    else:
        names = [str(n) for n in labels]
    return names if include_background else names[1:]


class MedsegMetricHandler(IgniteMetricHandler):
    """``IgniteMetricHandler`` that also accepts an ``annotated`` mask and logs vector results by name.

    Args:
        metric_fn: the cumulative metric.
        key_names: names of the entries of a vector result (classes, groups); each is logged as
            ``<handler name>_<key>`` and the handler's own value is their NaN-skipping mean.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)`` or ``(y_pred, y, annotated)``.
        save_details: keep per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        metric_fn,
        key_names: Sequence[str] | None = None,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
        self.key_names = list(key_names) if key_names is not None else None
        self._values: list[float] = []

    @torch.no_grad()
    def iteration_completed(self, engine) -> None:
        # ignite unpacks decollated outputs only as (y_pred, y) pairs; with `annotated` as a third item the
        # three lists go to update() whole, which stacks them into one batch
        output = self._output_transform(engine.state.output)
        if isinstance(output, (list, tuple)) and len(output) == 3:
            self.update(output)
        else:
            super().iteration_completed(engine)

    def update(self, output: Sequence) -> None:  # type: ignore[override]
        if len(output) not in (2, 3):
            raise ValueError(
                f"output_transform must give (y_pred, y) or (y_pred, y, annotated), got {len(output)} items"
            )
        y_pred, y = output[0], output[1]
        if isinstance(y_pred, (list, tuple)):  # decollated items: one batch again, so `annotated` lines up
            y_pred, y = torch.stack(list(y_pred)), torch.stack(list(y))
        if len(output) == 3 and output[2] is not None:
            annotated = output[2]
            if isinstance(annotated, (list, tuple)):
                annotated = torch.stack([torch.as_tensor(a) for a in annotated])
            self.metric_fn(y_pred, y, annotated=torch.as_tensor(annotated, dtype=torch.bool))
        else:
            self.metric_fn(y_pred, y)

    # the metric buffers per-case, per-class scores: average them here, skipping NaN, because MONAI's
    # reduction reports 0 for a class that no case scores (absent or unannotated everywhere)
    nan_mean_of_buffer = False

    def compute(self):
        result = super().compute()
        if self.nan_mean_of_buffer:
            buffer = self.metric_fn.get_buffer()
            result = torch.as_tensor(nanmean(torch.as_tensor(buffer).detach().cpu().double().numpy(), axis=0))
        if isinstance(result, torch.Tensor) or isinstance(result, (list, tuple)):
            values = [float(v) for v in torch.as_tensor(result).reshape(-1)]
        else:
            values = [float(result)]
        self._values = values
        return nanmean(values) if len(values) > 1 or self.key_names else values[0]

    def completed(self, engine, name: str) -> None:
        super().completed(engine, name)
        if not self.key_names:
            return
        if len(self.key_names) != len(self._values):
            raise ValueError(
                f"{name}: {len(self._values)} values but {len(self.key_names)} names {self.key_names}; "
                "check the handler's class names against the network's output channels"
            )
        for key, value in zip(self.key_names, self._values, strict=True):
            engine.state.metrics[f"{name}_{column_key(key)}"] = value


class ClassDice(MedsegMetricHandler):
    """Dice per class (``<name>_<class>``) and its mean over classes (``<name>``).

    A class absent from both masks of a case, or not annotated, is left out of that case.

    Args:
        labels: class names by label value, background first (a datalist's ``labels`` mapping or a list).
        include_background: score channel 0 too.
        num_classes: needed when predictions are argmax'd ``(B, 1, H, W)``.
        output_transform: e.g. ``from_engine(["pred", "label"])``.
        save_details: keep per-case values in ``engine.state.metric_details``.
    """

    nan_mean_of_buffer = True

    def __init__(
        self,
        labels: Mapping[str, str] | Sequence[str] | None = None,
        include_background: bool = False,
        num_classes: int | None = None,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        metric = ClassDiceMetric(include_background=include_background, reduction="mean_batch", num_classes=num_classes)
        super().__init__(metric, label_names(labels, include_background), output_transform, save_details)


class ClassIoU(MedsegMetricHandler):
    """IoU (Jaccard) per class and its mean over classes; arguments as :class:`ClassDice`."""

    nan_mean_of_buffer = True

    def __init__(
        self,
        labels: Mapping[str, str] | Sequence[str] | None = None,
        include_background: bool = False,
        num_classes: int | None = None,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        metric = ClassIoUMetric(include_background=include_background, reduction="mean_batch", num_classes=num_classes)
        super().__init__(metric, label_names(labels, include_background), output_transform, save_details)


class _SpacedHausdorffMetric(HausdorffDistanceMetric):
    """MONAI's Hausdorff metric with a fixed pixel spacing (the ignite handler passes no keyword arguments)."""

    def __init__(self, spacing: float | Sequence[float] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spacing = spacing

    def _compute_tensor(self, y_pred, y, **kwargs):  # type: ignore[override]
        kwargs.pop("annotated", None)  # distances of unannotated classes are not masked here
        return super()._compute_tensor(y_pred, y, spacing=self.spacing, **kwargs)


class ClassHausdorff95(MedsegMetricHandler):
    """95th-percentile Hausdorff distance per foreground class (MONAI ``HausdorffDistanceMetric``).

    Needs one-hot input. Values are in mm when ``spacing`` is given, else in pixels; a class missing from
    either mask of a case is left out (MONAI returns NaN there).

    Args:
        labels: class names by label value, background first.
        spacing: pixel spacing (one number or one per axis), or None for pixels.
        percentile: 95 for HD95.
        output_transform: e.g. ``from_engine(["pred", "label"])``.
        save_details: keep per-case values in ``engine.state.metric_details``.
    """

    nan_mean_of_buffer = True

    def __init__(
        self,
        labels: Mapping[str, str] | Sequence[str] | None = None,
        spacing: float | Sequence[float] | None = None,
        percentile: float = 95.0,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        metric = _SpacedHausdorffMetric(
            spacing=spacing, include_background=False, percentile=percentile, reduction="mean_batch"
        )
        super().__init__(metric, label_names(labels, False), output_transform, save_details)


class ThresholdedJaccard(MedsegMetricHandler):
    """ISIC 2018 thresholded Jaccard (``thresholded=False``: the plain mean per-image Jaccard).

    Args:
        threshold: per-image Jaccard below it counts 0.
        thresholded: False for the plain mean Jaccard.
        num_classes: needed for argmax'd input.
        output_transform: e.g. ``from_engine(["pred", "label"])``.
        save_details: keep per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        threshold: float = ISIC_JACCARD_THRESHOLD,
        thresholded: bool = True,
        num_classes: int | None = None,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        metric = ThresholdedJaccardMetric(threshold=threshold, thresholded=thresholded, num_classes=num_classes)
        super().__init__(metric, None, output_transform, save_details)


class PixelAccuracy(MedsegMetricHandler):
    """PixSim, PixSim_black (``baseline=True``), N_90 (``min_accuracy=0.9``) or N_90_black (both).

    Args:
        baseline: score an all-background prediction instead of the model's.
        min_accuracy: None for the mean accuracy; a share (0.9) for the share of images reaching it.
        num_classes: needed for argmax'd input.
        output_transform: e.g. ``from_engine(["pred", "label"])``.
        save_details: keep per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        baseline: bool = False,
        min_accuracy: float | None = None,
        num_classes: int | None = None,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        metric = PixelAccuracyMetric(baseline=baseline, min_accuracy=min_accuracy, num_classes=num_classes)
        super().__init__(metric, None, output_transform, save_details)


class LesionCoverage(MedsegMetricHandler):
    """N_lesion_90 (``min_share=0.9``) or N_lesion_50 (``0.5``): images whose foreground is found that well.

    Args:
        min_share: share of ground-truth foreground pixels that must be predicted as their class.
        num_classes: needed for argmax'd input.
        output_transform: e.g. ``from_engine(["pred", "label"])``.
        save_details: keep per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        min_share: float = 0.9,
        num_classes: int | None = None,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        super().__init__(LesionCoverageMetric(min_share, num_classes), None, output_transform, save_details)


class ClassLevelJaccard(MedsegMetricHandler):
    """Share of foreground classes whose mean IoU reaches ``threshold`` (HAM10000 class-level Jaccard).

    Args:
        threshold: IoU a class must reach.
        num_classes: needed for argmax'd input.
        output_transform: e.g. ``from_engine(["pred", "label"])``.
        save_details: keep per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        threshold: float = ISIC_JACCARD_THRESHOLD,
        num_classes: int | None = None,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        super().__init__(ClassLevelJaccardMetric(threshold, num_classes), None, output_transform, save_details)


class MergedIoU(MedsegMetricHandler):
    """IoU of merged classes, logged as ``<name>_<group>``, and their mean as ``<name>``.

    Args:
        groups: group name -> label values, e.g. ``{"malignant": [1, 4]}``.
        num_classes: needed for argmax'd input.
        output_transform: e.g. ``from_engine(["pred", "label"])``.
        save_details: keep per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        groups: Mapping[str, Sequence[int]],
        num_classes: int | None = None,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        metric = MergedIoUMetric(groups, num_classes)
        super().__init__(metric, list(metric.groups), output_transform, save_details)
