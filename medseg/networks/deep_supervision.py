"""A deep-supervision loss that takes a network's output as the trainer hands it over, stacked or not."""

from __future__ import annotations

import torch
from monai.losses import DeepSupervisionLoss
from torch.nn.modules.loss import _Loss

__all__ = ["StackedDeepSupervisionLoss"]


class StackedDeepSupervisionLoss(_Loss):
    """MONAI's ``DeepSupervisionLoss`` for networks that stack their heads on dim 1 in train mode.

    ``UNet3Plus(deep_supervision=True)`` and ``DynUNet`` return ``(batch, heads, classes, H, W)`` in train mode and
    ``(batch, classes, H, W)`` in eval mode. This loss accepts both, so one ``loss`` config id serves the trainer
    (weighted sum over the heads, the main output weighted most) and the validation loss metric (the plain loss),
    without a ``torch.unbind`` lambda in the trainer's config.

    Args:
        loss: the loss applied to each head (e.g. ``DiceFocalLoss``).
        weight_mode: ``"same"``, ``"exp"`` (1, 0.5, 0.25, ...) or ``"two"``, as in MONAI.
        weights: explicit head weights (override ``weight_mode``).
    """

    def __init__(self, loss: _Loss, weight_mode: str = "exp", weights: list[float] | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.deep_supervision = DeepSupervisionLoss(loss, weight_mode=weight_mode, weights=weights)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        """Loss of ``input`` (stacked heads or one output) against ``target`` ``(batch, 1, H, W)``."""
        if input.dim() == target.dim() + 1:
            return self.deep_supervision(list(torch.unbind(input, dim=1)), target)
        return self.loss(input, target)
