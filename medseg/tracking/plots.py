"""Figures logged with a run and drawn by ``medseg compare`` (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve_png(
    history: Mapping[str, Mapping[int, float]], out: str | Path, loss_keys: Sequence[str], metric_key: str | None
) -> Path:
    """Losses (left) and the key metric (right) per epoch.

    Args:
        history: metric name -> {epoch: value}.
        out: the PNG to write.
        loss_keys: which metrics go in the loss panel (those missing are skipped).
        metric_key: the metric for the right panel, or None for a single panel.

    Returns:
        the written path.
    """
    plt = _pyplot()
    panels = 2 if metric_key and metric_key in history else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    for key in loss_keys:
        if key in history and history[key]:
            epochs = sorted(history[key])
            axes[0, 0].plot(epochs, [history[key][e] for e in epochs], marker="o", label=key)
    axes[0, 0].set(xlabel="epoch", ylabel="loss", title="loss")
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend(loc="best", fontsize="small")
    if panels == 2:
        epochs = sorted(history[metric_key])
        axes[0, 1].plot(epochs, [history[metric_key][e] for e in epochs], marker="o", color="tab:green")
        axes[0, 1].set(xlabel="epoch", ylabel=metric_key, title=metric_key)
    return _save(fig, out)


def _to_display(image: np.ndarray) -> np.ndarray:
    """Channel-first image -> HxW or HxWx3 in [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[0] if image.shape[0] not in (3, 4) else np.moveaxis(image[:3], 0, -1)
    low, high = float(np.min(image)), float(np.max(image))
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _to_mask(mask: np.ndarray) -> np.ndarray:
    """Channel-first one-hot or label map -> HxW label map."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.argmax(0) if mask.shape[0] > 1 else mask[0]
    return np.rint(mask).astype(np.int64)


def overlay_png(
    image: np.ndarray, label: np.ndarray | None, pred: np.ndarray, out: str | Path, title: str = ""
) -> Path:
    """One validation case: image, ground-truth contour (green) and prediction contour (red).

    Args:
        image: channel-first image (1 or 3 channels).
        label: channel-first ground truth (label map or one-hot), or None.
        pred: channel-first prediction (label map or one-hot, after post-processing).
        out: the PNG to write.
        title: a caption (case id, epoch).

    Returns:
        the written path.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.2, 3.4))
    shown = _to_display(image)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    for mask, colour in ((label, "lime"), (pred, "red")):
        if mask is None:
            continue
        mask = _to_mask(mask)
        if mask.max() > 0:
            ax.contour(mask, levels=np.arange(0.5, mask.max() + 0.5), colors=colour, linewidths=1)
    ax.set_title(title, fontsize="small")
    ax.axis("off")
    return _save(fig, out)


def compare_curves_png(
    curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]], metric_keys: Sequence[str], out: str | Path
) -> Path:
    """Overlay several runs' curves, one panel per metric.

    Args:
        curves: run label -> metric -> [(step, value), ...].
        metric_keys: the panels, in order.
        out: the PNG to write.

    Returns:
        the written path.
    """
    plt = _pyplot()
    width = 4.6 * len(metric_keys) + 2.6  # room for the legend on the right
    fig, axes = plt.subplots(1, len(metric_keys), figsize=(width, 3.8), squeeze=False)
    for ax, key in zip(axes[0], metric_keys, strict=True):
        for label, metrics in curves.items():
            points = sorted(metrics.get(key, ()))
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=label)
        ax.set(xlabel="epoch", ylabel=key, title=key)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:  # outside the axes, so no curve is hidden behind it
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0 - 2.5 / width, 0.5), fontsize="x-small")
        fig.tight_layout(rect=(0, 0, 1.0 - 2.6 / width, 1))
    return _save(fig, out, layout=not handles)


def _save(fig, out: str | Path, layout: bool = True) -> Path:
    """Write a figure as PNG (creating the folder) and free it."""
    plt = _pyplot()

    if layout:
        fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
