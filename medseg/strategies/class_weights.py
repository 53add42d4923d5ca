"""Class weights against class imbalance, from the class frequencies ``data_prep`` writes into ``stats.json``.

Two weightings, both scaled to mean 1 so the loss keeps its magnitude:

- ``inverse``: 1 / pixel fraction (:func:`medseg.bundle.class_weights_from_stats`);
- ``effective``: the "effective number of samples" (Cui et al., 2019), ``(1 - beta) / (1 - beta**n)`` per class,
  ``n`` the class's count (pixels, or images containing it). ``beta`` near 1 (0.9999...) weighs like ``inverse``;
  ``beta = 0`` gives equal weights.

For Dice-Focal the weights go to ``DiceFocalLoss(weight=...)`` (the bundles' ``class_weights`` id); for
cross-entropy to ``DiceCELoss(lambda_dice=0, weight=...)`` (``bundles/strategies/weighted_ce.json``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.strategies.errors import StrategyError

METHODS = ("inverse", "effective")
COUNTS = ("pixels", "items_with_class")


def effective_number_weights(counts: Sequence[float], beta: float) -> list[float]:
    """``(1 - beta) / (1 - beta**n)`` per class, scaled to mean 1.

    A class with ``n = 0`` (absent from the split) gets the largest weight of the present classes.

    Args:
        counts: samples of each class (index = label value).
        beta: in ``[0, 1)``.

    Returns:
        one weight per class.

    Raises:
        StrategyError: ``beta`` out of range, a negative count, or no class present.
    """
    if not 0.0 <= beta < 1.0:
        raise StrategyError(f"beta must be in [0, 1) for effective-number weights (got {beta})")
    if any(n < 0 for n in counts):
        raise StrategyError(f"class counts must be >= 0 (got {list(counts)})")
    raw = [(1.0 - beta) / (1.0 - beta**n) if n > 0 else 0.0 for n in counts]
    present = [w for w in raw if w > 0]
    if not present:
        raise StrategyError("every class has count 0; there is nothing to weigh")
    raw = [w if w > 0 else max(present) for w in raw]
    mean = sum(raw) / len(raw)
    return [w / mean for w in raw]


def _counts(stats_path: Path, num_classes: int, split: str, count: str) -> list[float]:
    if count not in COUNTS:
        raise StrategyError(f"count must be one of {', '.join(COUNTS)} (got {count!r})")
    if not stats_path.is_file():
        raise StrategyError(f"{stats_path}: stats.json not found; python -m data_prep writes it beside datalist.json")
    try:
        found = json.loads(stats_path.read_text())["class_frequency"][split][count]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise StrategyError(
            f"{stats_path}: no class_frequency.{split}.{count} ({error!r}); regenerate it with python -m data_prep"
        ) from None
    return [float(found.get(str(c), 0)) for c in range(num_classes)]


def class_weights(
    stats_path: str | Path,
    num_classes: int,
    method: str = "inverse",
    beta: float = 0.9999,
    split: str = "training",
    count: str = "pixels",
) -> list[float]:
    """Class weights from ``stats.json``.

    Args:
        stats_path: the ``stats.json`` beside the datalist.
        num_classes: the network's output channels (background included).
        method: ``inverse`` (1 / pixel fraction) or ``effective`` (effective number of samples).
        beta: the effective-number hyper-parameter.
        split: the split whose counts are used.
        count: for ``effective``: ``pixels`` or ``items_with_class`` (images containing the class).

    Returns:
        one weight per class, mean 1.

    Raises:
        StrategyError: unknown method, missing or malformed ``stats.json``.
    """
    if method not in METHODS:
        raise StrategyError(f"unknown class-weight method {method!r}; choose one of: {', '.join(METHODS)}")
    path = Path(stats_path)
    if method == "inverse":
        from medseg.bundle import BundleInputError, class_weights_from_stats

        try:
            return class_weights_from_stats(path, int(num_classes), split)
        except BundleInputError as error:
            raise StrategyError(str(error)) from None
    return effective_number_weights(_counts(path, int(num_classes), split, count), float(beta))


def class_weight_tensor(stats_path: str | Path, num_classes: int, device: Any = "cpu", **kwargs: Any) -> Any:
    """:func:`class_weights` as a float tensor on ``device`` (what ``DiceCELoss(weight=...)`` needs)."""
    import torch

    return torch.tensor(class_weights(stats_path, num_classes, **kwargs), dtype=torch.float32, device=device)
