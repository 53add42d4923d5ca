"""Per-class post-processing of a label map for ``medseg predict``: the decision the manifest records.

``postprocessing.classes`` maps a label value to ``{"largest_component": bool, "fill_holes": bool}``; MONAI's
``KeepLargestConnectedComponent`` and ``FillHoles`` apply it. A shared implementation can replace
:func:`apply_decision` without changing manifests.
"""

from __future__ import annotations

from typing import Any


def apply_decision(label_map: Any, classes: dict[str, dict] | None) -> Any:
    """Apply each class's decision to a (1, H, W) label map tensor; classes without one are untouched."""
    from monai.transforms import FillHoles, KeepLargestConnectedComponent

    for value, decision in sorted((classes or {}).items(), key=lambda kv: int(kv[0])):
        if decision.get("largest_component"):
            label_map = KeepLargestConnectedComponent(applied_labels=[int(value)], is_onehot=False)(label_map)
        if decision.get("fill_holes"):
            label_map = FillHoles(applied_labels=[int(value)])(label_map)
    return label_map
