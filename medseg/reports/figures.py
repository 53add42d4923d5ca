"""The report's figures, drawn with matplotlib's Agg backend (no display needed): class frequencies,
per-case score histograms and image / ground truth / prediction overlays with a colour legend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# background is transparent in overlays; foreground colours are tab10 (distinct for up to 10 classes)
OVERLAY_ALPHA = 0.5


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def class_colours(num_classes: int) -> np.ndarray:
    """RGB colours in [0, 1], one per label value; background (0) is black."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if num_classes <= 11 else "tab20")
    colours = np.zeros((num_classes, 3))
    for c in range(1, num_classes):
        colours[c] = cmap((c - 1) % cmap.N)[:3]
    return colours


def class_frequency_chart(
    class_names: Sequence[str], gt_frequency: Sequence[float], pred_frequency: Sequence[float], path: Path
) -> None:
    """Bar chart of the share of pixels of each class in the ground truth and in the predictions."""
    plt = _pyplot()
    x = np.arange(len(class_names))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(class_names) + 2), 3.2))
    ax.bar(x - 0.2, gt_frequency, width=0.4, label="ground truth", color="#4c72b0")
    ax.bar(x + 0.2, pred_frequency, width=0.4, label="prediction", color="#dd8452")
    ax.set_xticks(x, list(class_names), rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("share of pixels (log)")
    ax.set_title("Class pixel frequencies")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def score_histograms(columns: dict[str, np.ndarray], path: Path) -> None:
    """Histograms (0..1, 20 bins) of per-case scores, one panel per column; NaN values are left out."""
    plt = _pyplot()
    names = list(columns)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = np.asarray(columns[name], dtype=np.float64)
        values = values[~np.isnan(values)]
        ax.hist(values, bins=np.linspace(0, 1, 21), color="#4c72b0", edgecolor="white")
        ax.set_title(f"{name} (n={values.size})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("score")
    axes[0][0].set_ylabel("cases")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _blend(base: np.ndarray, labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    out = base.copy()
    fg = labels > 0
    out[fg] = (1 - OVERLAY_ALPHA) * base[fg] + OVERLAY_ALPHA * colours[labels[fg]]
    return out


def _as_rgb(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Image as float RGB in [0, 1] of ``shape``; a grey canvas when there is no (matching) image."""
    if image is None or tuple(np.shape(image)[:2]) != tuple(shape):
        return np.full((*shape, 3), 0.35)
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _focus_box(gt: np.ndarray, pred: np.ndarray, min_side: int = 48) -> tuple[slice, slice]:
    """Crop around small structures (e.g. a heart in a thorax slice) so they can be seen; whole image otherwise."""
    rows, cols = np.nonzero((gt > 0) | (pred > 0))
    height, width = gt.shape
    if rows.size == 0:
        return slice(None), slice(None)
    box_h, box_w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    if box_h * box_w > 0.25 * height * width:
        return slice(None), slice(None)
    side = max(min_side, int(1.6 * max(box_h, box_w)))
    cy, cx = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    top = int(np.clip(cy - side // 2, 0, max(height - side, 0)))
    left = int(np.clip(cx - side // 2, 0, max(width - side, 0)))
    return slice(top, top + side), slice(left, left + side)


def overlay_figure(
    image: np.ndarray | None,
    gt: np.ndarray,
    pred: np.ndarray,
    class_names: Sequence[str],
    title: str,
    path: Path,
) -> None:
    """Image, ground truth over the image and prediction over the image, side by side, with a class legend.

    Small structures are shown cropped around their bounding box (see ``_focus_box``).
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    colours = class_colours(len(class_names))
    base = _as_rgb(image, gt.shape)
    box = _focus_box(gt, pred)
    base, gt, pred = base[box], gt[box], pred[box]
    panels = [("image", base), ("ground truth", _blend(base, gt, colours)), ("prediction", _blend(base, pred, colours))]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for ax, (name, picture) in zip(axes, panels, strict=True):
        ax.imshow(np.clip(picture, 0, 1), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    handles = [Patch(color=colours[c], label=f"{c} {class_names[c]}") for c in range(1, len(class_names))]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)
