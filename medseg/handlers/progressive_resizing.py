"""Progressive resizing within one training run: the early part of the budget trains on smaller copies of the batches.

``medseg progressive`` (:mod:`medseg.strategies.progressive`) runs one bundle run per size, each with its own epochs
and schedule. This handler does the same inside a single run, so that the learning-rate schedule, the time budget,
validation and checkpoint choice stay those of one run: the budget is split into stages, and during a stage with a
scale below 1 every training batch is resized to that fraction of ``spatial_size`` before the step (fast.ai's
progressive resizing). Validation always runs at the bundle's own size, so the kept checkpoint is the one that
segments best at the size it will be used at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medseg.bundle.errors import BundleInputError

if TYPE_CHECKING:
    from ignite.engine import Engine

logger = logging.getLogger(__name__)


def check_stages(scales: Any, shares: Any = None) -> tuple[list[float], list[float]]:
    """The checked ``progressive_scales`` and ``progressive_shares`` settings.

    Returns:
        the scales, and each stage's share of the budget (equal shares when ``shares`` is None).

    Raises:
        BundleInputError: scales that do not rise to 1.0 from above 0, or shares that are not positive, one per
            scale, summing to 1.
    """
    example = "e.g. --progressive_scales '[0.5, 0.75, 1.0]'"
    if not isinstance(scales, Sequence) or isinstance(scales, str) or len(scales) < 2:
        raise BundleInputError(
            f"--progressive_scales {scales!r}: give two or more scales of the training size, {example}"
        )
    if any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in scales):
        raise BundleInputError(f"--progressive_scales {scales!r}: every scale must be a number, {example}")
    scales = [float(s) for s in scales]
    if not (0 < scales[0] and all(a < b for a, b in zip(scales, scales[1:], strict=False)) and scales[-1] == 1.0):
        raise BundleInputError(
            f"--progressive_scales {scales}: scales must rise from above 0 and end at 1.0 (the bundle's own size, "
            f"which validation uses), {example}"
        )
    if shares is None:
        return scales, [1.0 / len(scales)] * len(scales)
    if (not isinstance(shares, Sequence) or isinstance(shares, str) or len(shares) != len(scales)
            or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0 for s in shares)
            or abs(sum(shares) - 1.0) > 1e-6):
        raise BundleInputError(
            f"--progressive_shares {shares!r}: give one positive share of the budget per scale ({len(scales)}), "
            "summing to 1, e.g. --progressive_shares '[0.4, 0.3, 0.3]'; or leave it null for equal shares"
        )
    return scales, [float(s) for s in shares]


class ProgressiveResizing:
    """Ignite handler: train at a fraction of ``spatial_size`` for the early stages of the budget.

    Progress is the larger of the epochs done over ``max_epochs`` and the wall time since the trainer started over
    ``seconds`` (the run's time budget), as :class:`medseg.strategies.schedules.BudgetCosineLR` measures it, so the
    stages follow the same clock as the learning rate. Images are resized bilinearly with anti-aliasing, label maps
    by nearest neighbour, on the collated batch (one call per batch, not per image).

    Args:
        spatial_size: the training size (``@spatial_size``); the last stage trains at it unchanged.
        scales: the stages' fractions of ``spatial_size``, rising to 1.0; None turns the handler off.
        shares: each stage's share of the budget (default: equal shares).
        max_epochs: the run's epochs.
        seconds: the run's time budget; None or 0 for epochs only.
        divisor: stage sizes are rounded to multiples of it (the network's :func:`medseg.networks.size_divisor`).
        keys: the batch's image and label keys.

    Raises:
        BundleInputError: bad ``scales`` or ``shares`` (see :func:`check_stages`).
    """

    def __init__(self, spatial_size: Sequence[int], scales: Sequence[float] | None = None,
                 shares: Sequence[float] | None = None, max_epochs: int = 1, seconds: float | None = None,
                 divisor: int = 1, keys: tuple[str, str] = ("image", "label")) -> None:
        self.enabled = scales is not None
        if not self.enabled:
            return
        self.scales, shares = check_stages(scales, shares)
        self.ends = [sum(shares[: i + 1]) for i in range(len(shares))]
        from medseg.networks import nearest_multiple

        self.sizes = [tuple(nearest_multiple(int(s) * scale, int(divisor)) for s in spatial_size)
                      for scale in self.scales]
        self.max_epochs = max(int(max_epochs), 1)
        self.seconds = float(seconds) if seconds else None
        self.keys = keys
        self.stage = 0
        self.started: float | None = None

    def attach(self, engine: Engine) -> None:
        """Start the clock with the trainer, choose the stage at each epoch, resize each batch of a smaller stage."""
        from ignite.engine import Events

        if not self.enabled:
            return
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.EPOCH_STARTED, self._choose_stage)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._resize_batch)

    def progress(self, epochs_done: int) -> float:
        """The fraction of the budget spent after ``epochs_done`` epochs, in [0, 1]."""
        fraction = epochs_done / self.max_epochs
        if self.seconds and self.started is not None:
            fraction = max(fraction, (time.monotonic() - self.started) / self.seconds)
        return min(fraction, 1.0)

    @property
    def size(self) -> tuple[int, ...]:
        """The training size of the current stage."""
        return self.sizes[self.stage]

    def _start(self, engine: Engine) -> None:
        self.started = time.monotonic()

    def _choose_stage(self, engine: Engine) -> None:
        progress = self.progress(engine.state.epoch - 1)
        stage = next((i for i, end in enumerate(self.ends) if progress < end), len(self.ends) - 1)
        stage = max(stage, self.stage)  # never back to a smaller size
        if stage != self.stage or engine.state.epoch == 1:
            self.stage = stage
            logger.info("progressive resizing: epoch %d trains at %s (stage %d of %d, %.0f%% of the budget spent)",
                        engine.state.epoch, "x".join(map(str, self.size)), stage + 1, len(self.sizes), 100 * progress)

    def _resize_batch(self, engine: Engine) -> None:
        if self.stage == len(self.sizes) - 1:
            return
        import torch
        from monai.utils import convert_to_tensor

        batch = engine.state.batch
        image_key, label_key = self.keys
        image = convert_to_tensor(batch[image_key], track_meta=False)
        label = convert_to_tensor(batch[label_key], track_meta=False)
        resized = dict(batch)
        resized[image_key] = torch.nn.functional.interpolate(
            image.float(), size=self.size, mode="bilinear", align_corners=False, antialias=True
        ).to(image.dtype)
        resized[label_key] = torch.nn.functional.interpolate(
            label.float(), size=self.size, mode="nearest-exact"
        ).to(label.dtype)
        engine.state.batch = resized
