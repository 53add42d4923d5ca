"""Class weights for the loss, from the class frequencies ``data_prep`` writes into ``stats.json``."""

from __future__ import annotations

import json
from pathlib import Path

from medseg.bundle.errors import BundleInputError


def class_weights_from_stats(stats_path: str | Path, num_classes: int, split: str = "training") -> list[float]:
    """Inverse-frequency class weights, scaled to mean 1, from ``stats.json``.

    A class absent from the split gets the largest weight of the present ones (it cannot be estimated,
    and a zero frequency would give an infinite weight).

    Args:
        stats_path: the ``stats.json`` beside the datalist.
        num_classes: number of output channels of the network (background included).
        split: the split whose pixel fractions are used.

    Returns:
        one weight per class, index = label value.

    Raises:
        BundleInputError: the file is missing or has no class frequencies for the split.
    """
    path = Path(stats_path)
    if not path.is_file():
        raise BundleInputError(
            f"{path}: stats.json not found; python -m data_prep writes it beside datalist.json"
        )
    try:
        fraction = json.loads(path.read_text())["class_frequency"][split]["fraction"]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise BundleInputError(
            f"{path}: no class_frequency.{split}.fraction ({exc!r}); regenerate it with data_prep"
        ) from None
    freqs = [float(fraction.get(str(c), 0.0)) for c in range(num_classes)]
    present = [f for f in freqs if f > 0]
    if not present:
        raise BundleInputError(f"{path}: every class has frequency 0 in {split!r}")
    inverse = [1.0 / f if f > 0 else 0.0 for f in freqs]
    largest = max(inverse)
    inverse = [w if w > 0 else largest for w in inverse]
    mean = sum(inverse) / len(inverse)
    return [w / mean for w in inverse]
