"""Test-time augmentation for ``medseg predict``: softmax averaged over flips and 90-degree rotations.

The interface is the manifest's ``inference.tta`` (``{"flips": [[0], [1]], "rot90": [1, 2]}``, spatial axes of a
2D image) and :func:`tta_softmax`; a shared TTA inferer can replace this module without changing manifests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def augmentations(tta: dict | None) -> list[tuple[str, Any]]:
    """The identity plus each flip (axes) and each rotation (k quarter turns) of a manifest's ``tta``."""
    tta = tta or {}
    return (
        [("identity", None)]
        + [("flip", tuple(a)) for a in tta.get("flips", [])]
        + [("rot90", int(k)) for k in tta.get("rot90", [])]
    )


def tta_softmax(network: Callable[[Any], Any], batch: Any, tta: dict | None) -> Any:
    """Mean softmax of ``network`` over the augmentations of ``batch`` (N, C, H, W), each mapped back.

    Returns:
        float32 probabilities (N, classes, H, W).
    """
    import torch

    total = None
    augs = augmentations(tta)
    for kind, arg in augs:
        if kind == "flip":
            dims = [2 + a for a in arg]
            probs = torch.softmax(network(torch.flip(batch, dims)).float(), 1).flip(dims)
        elif kind == "rot90":
            probs = torch.softmax(network(torch.rot90(batch, arg, (2, 3))).float(), 1)
            probs = torch.rot90(probs, -arg, (2, 3))
        else:
            probs = torch.softmax(network(batch).float(), 1)
        total = probs if total is None else total + probs
    return total / len(augs)
