"""The coursework's U-Net: a small U-Net with max pooling, dropout after each pooling and a 1x1 output convolution.

The recipe (3 encoder stages of conv - batch norm - LeakyReLU, 2x2 max pooling with dropout 0.2 after each, a
one-convolution bottleneck, transposed-convolution upsampling, skip concatenation, a 1x1 output convolution) cannot
be written as a configuration of MONAI's nets: ``monai.networks.nets.UNet`` downsamples with strided convolutions
(no pooling), puts dropout inside every convolution and ends with a transposed convolution instead of a 1x1 one;
``BasicUNet`` has a fixed depth of four pooling levels with two convolutions per level. So it is a small module here,
built from MONAI's ``Convolution`` block (conv - norm - activation, MONAI's ordering) and ``nn.ConvTranspose2d``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from medseg.networks._checks import check_divisible

__all__ = ["CourseworkUNet"]


class CourseworkUNet(nn.Module):
    """The coursework U-Net (see the module docstring).

    Args:
        spatial_dims: must be 2.
        in_channels: input channels.
        out_channels: output channels (classes, background included).
        channels: channels of the encoder stages, then of the bottleneck (``len(channels) - 1`` stages).
        dropout: dropout probability after each pooling.
        negative_slope: LeakyReLU slope.
        convs_per_stage: conv - BN - LeakyReLU layers per encoder and decoder stage (1 in the coursework).

    Input height and width must be multiples of ``2 ** (len(channels) - 1)`` (8 for three stages).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 4,
        channels: Sequence[int] = (32, 64, 128, 256),
        dropout: float = 0.2,
        negative_slope: float = 0.01,
        convs_per_stage: int = 1,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"CourseworkUNet is 2D only, got spatial_dims={spatial_dims}; use spatial_dims=2.")
        channels = [int(c) for c in channels]
        if len(channels) < 2 or convs_per_stage < 1:
            raise ValueError(f"CourseworkUNet needs at least one stage and a bottleneck, got channels={channels}.")
        self.divisor = 2 ** (len(channels) - 1)
        act = ("leakyrelu", {"negative_slope": negative_slope})

        def stage(c_in: int, c_out: int, n: int) -> nn.Sequential:
            return nn.Sequential(
                *[Convolution(2, c_in if i == 0 else c_out, c_out, norm="batch", act=act) for i in range(n)]
            )

        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        previous = in_channels
        for c in channels[:-1]:
            self.encoder.append(stage(previous, c, convs_per_stage))
            self.down.append(nn.Sequential(nn.MaxPool2d(2), nn.Dropout(dropout)))
            previous = c
        self.bottleneck = stage(previous, channels[-1], 1)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        previous = channels[-1]
        for c in reversed(channels[:-1]):
            self.up.append(nn.ConvTranspose2d(previous, c, kernel_size=2, stride=2))
            self.decoder.append(stage(2 * c, c, convs_per_stage))
            previous = c
        self.head = nn.Conv2d(previous, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x`` ``(batch, in_channels, H, W)`` into logits ``(batch, out_channels, H, W)``."""
        check_divisible(x, self.divisor, "CourseworkUNet")
        skips: list[torch.Tensor] = []
        for encode, down in zip(self.encoder, self.down):  # noqa: B905 (TorchScript has no strict=)
            x = encode(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for i, (up, decode) in enumerate(zip(self.up, self.decoder)):  # noqa: B905
            x = decode(torch.cat([up(x), skips[len(skips) - 1 - i]], dim=1))
        return self.head(x)
