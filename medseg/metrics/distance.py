"""Surface distances per class (95th-percentile Hausdorff and average symmetric surface distance) via MONAI.

MONAI's ``get_edge_surface_distance`` finds the boundary pixels and their distances once per class; both
scores are read from the same distances, exactly as ``monai.metrics.compute_hausdorff_distance`` (with
``percentile=95``) and ``compute_average_surface_distance`` (``symmetric=True``) compute them. torch and
MONAI are imported only when these functions run: they are slower than the overlap scores.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np


def surface_distances_per_class(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    spacing: Sequence[float] | None = None,
    percentile: float = 95.0,
    annotated: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile Hausdorff distance and average symmetric surface distance of each foreground class.

    Args:
        pred: predicted ``(H, W)`` label map.
        gt: ground-truth ``(H, W)`` label map.
        num_classes: number of label values (background included).
        spacing: (row, column) pixel size in mm; None measures in pixels.
        percentile: the Hausdorff percentile (95 for HD95).
        annotated: optional ``(C,)`` boolean mask of scored classes.

    Returns:
        ``(hd, assd)``, each ``(C,)`` with NaN for the background, for a class missing from either mask
        (MONAI leaves the distance undefined then) and for unannotated classes.
    """
    import torch
    from monai.metrics.utils import get_edge_surface_distance

    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    hd = np.full(num_classes, np.nan)
    assd = np.full(num_classes, np.nan)
    spacing_arg = None if spacing is None else [float(s) for s in spacing]
    for c in range(1, num_classes):
        if annotated is not None and not annotated[c]:
            continue
        pred_c, gt_c = pred == c, gt == c
        if not pred_c.any() or not gt_c.any():
            continue  # undefined: MONAI returns NaN (HD) or inf (ASSD) here; report NaN for both
        # distances do not change under translation: crop to both masks' box (plus a border for the edges)
        # in numpy first, which is much cheaper than letting MONAI scan the whole image per class
        rows, cols = np.nonzero(pred_c | gt_c)
        box = (slice(max(rows.min() - 2, 0), rows.max() + 3), slice(max(cols.min() - 2, 0), cols.max() + 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, distances, _ = get_edge_surface_distance(
                torch.from_numpy(np.ascontiguousarray(pred_c[box])),
                torch.from_numpy(np.ascontiguousarray(gt_c[box])),
                distance_metric="euclidean",
                spacing=spacing_arg,
                symmetric=True,
                class_index=c,
            )
        hd[c] = max(float(torch.quantile(d.double(), percentile / 100.0)) for d in distances)
        assd[c] = float(torch.cat(distances).double().mean())
    return hd, assd
