"""Which classes a case annotates, as a mask that batches (Sunnybrook has no RV, some slices no myocardium)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.transforms import MapTransform


class AnnotatedMaskd(MapTransform):
    """Turn a datalist item's ``annotated`` list into a ``(num_classes,)`` boolean mask.

    ``data_prep`` writes ``annotated`` (the foreground label values annotated for the item) only where a source
    leaves classes out; lists of different lengths do not batch, a fixed-size mask does. Background is always
    annotated; an item without the key annotates every class. The metric handlers of ``medseg.handlers.metrics``
    and ``SegmentationReport`` take the mask and leave unannotated classes out of that case's scores.

    Args:
        num_classes: number of label values, background included.
        key: the item key holding the list, replaced by the mask.
    """

    def __init__(self, num_classes: int, key: str = "annotated") -> None:
        super().__init__(keys=key, allow_missing_keys=True)
        self.num_classes = int(num_classes)
        self.key = key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        values = d.get(self.key)
        mask = torch.ones(self.num_classes, dtype=torch.bool)
        if values is not None and not isinstance(values, torch.Tensor):
            mask[:] = False
            mask[0] = True
            for value in values:
                if not 0 <= int(value) < self.num_classes:
                    raise ValueError(f"annotated value {value} is outside 0..{self.num_classes - 1}")
                mask[int(value)] = True
        elif isinstance(values, torch.Tensor):
            mask = values.to(torch.bool)
        d[self.key] = mask
        return d
