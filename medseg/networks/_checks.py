"""Input checks shared by medseg's networks (TorchScript-compatible)."""

from __future__ import annotations

import torch


def check_divisible(x: torch.Tensor, divisor: int, network: str) -> None:
    """Raise a one-line ``ValueError`` when the input's height or width is not a multiple of ``divisor``.

    Args:
        x: the network input, ``(batch, channels, height, width)``.
        divisor: the network's size rule (:func:`medseg.networks.size_divisor`).
        network: the network's name, for the message.
    """
    height, width = x.shape[-2], x.shape[-1]
    if height % divisor != 0 or width % divisor != 0:
        raise ValueError(
            network + " needs height and width that are multiples of " + str(divisor) + ", got "
            + str(height) + "x" + str(width) + "; pad with DivisiblePadd(k=" + str(divisor)
            + ") or set spatial_size to multiples of " + str(divisor)
        )
