"""UNet 3+ (Huang et al., "UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation", ICASSP 2020).

No maintained library provides it, so it is written here once, following the paper's Fig. 1 and its authors' code
(``UNet_3Plus`` in ZJUGiveLab/UNet-Version):

- encoder: ``len(filters)`` levels of two 3x3 conv (with bias) - batch norm - ReLU, 2x2 max pooling between levels;
- full-scale skip connections: every decoder level ``i`` receives every encoder level ``j <= i`` (max-pooled by
  ``2 ** (i - j)``) and every deeper decoder level (bilinearly upsampled), each through a 3x3 conv - BN - ReLU to
  ``filters[0]`` channels; the ``len(filters)`` maps are concatenated and fused by a 3x3 conv - BN - ReLU;
- deep supervision (optional): a 3x3 conv head on every decoder level and on the deepest encoder level, upsampled to
  the input size;
- classification-guided module (optional): dropout, 1x1 conv to 2 classes and global max pooling on the deepest
  encoder level predict whether the organ is present; the segmentation outputs are multiplied by that decision
  (argmax), which suppresses false positives on images without the organ.

With ``filters=(64, 128, 256, 512, 1024)``, 3 input channels and 1 output channel, without deep supervision and
without the classification-guided module, the network has 26,971,777 parameters: the 26.97 M of the paper's Table 1
(UNet 3+ with the VGG-16-like encoder), which ``tests/medseg/networks/test_networks.py`` checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg.networks._checks import check_divisible

__all__ = ["UNet3Plus"]


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class _Branch(nn.Module):
    """One full-scale skip connection: resize a map to the decoder level's size, then 3x3 conv - BN - ReLU."""

    def __init__(self, in_channels: int, out_channels: int, pool: int) -> None:
        super().__init__()
        self.pool = pool  # > 1: max pool by this factor; 1: same level; 0: upsample to the target size
        self.conv = nn.Sequential(*_conv_bn_relu(in_channels, out_channels))

    def forward(self, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        if self.pool > 1:
            x = F.max_pool2d(x, self.pool, self.pool, ceil_mode=True)
        elif self.pool == 0:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv(x)


class _DecoderLevel(nn.Module):
    """Decoder level ``level``: the concatenated full-scale branches, fused by a 3x3 conv - BN - ReLU."""

    def __init__(self, level: int, filters: Sequence[int], cat_channels: int) -> None:
        super().__init__()
        depth = len(filters)
        up_channels = cat_channels * depth
        branches = []
        for source in range(depth):
            if source < level:  # shallower encoder level, max-pooled
                branches.append(_Branch(filters[source], cat_channels, 2 ** (level - source)))
            elif source == level:  # the encoder level of the same scale
                branches.append(_Branch(filters[source], cat_channels, 1))
            else:  # deeper decoder level (the deepest is the encoder's bottom), upsampled
                channels = filters[source] if source == depth - 1 else up_channels
                branches.append(_Branch(channels, cat_channels, 0))
        self.branches = nn.ModuleList(branches)
        self.fuse = nn.Sequential(*_conv_bn_relu(up_channels, up_channels))

    def forward(self, sources: list[torch.Tensor], size: list[int]) -> torch.Tensor:
        maps = [branch(sources[i], size) for i, branch in enumerate(self.branches)]
        return self.fuse(torch.cat(maps, dim=1))


class UNet3Plus(nn.Module):
    """UNet 3+ for 2D images (see the module docstring for the architecture).

    Args:
        spatial_dims: must be 2.
        in_channels: input channels (1 for MRI, 3 for RGB).
        out_channels: output channels (classes, background included).
        filters: channels of the encoder levels; the paper's ``(64, 128, 256, 512, 1024)`` by default.
        deep_supervision: add a head on every decoder level and on the bottom; in train mode the forward pass
            returns them stacked after the main output, ``(batch, len(filters), out_channels, H, W)``, as MONAI's
            ``DynUNet`` does (train with :class:`medseg.networks.StackedDeepSupervisionLoss`); in eval mode it returns
            the main output only.
        classification_guided: add the classification-guided module (meant for a binary task where the organ may be
            absent); the outputs are multiplied by its argmax decision. Its classifier is trained with its own loss
            on :meth:`presence_logits`, which the medseg bundles do not do: leave it off there.

    Input height and width must be multiples of ``2 ** (len(filters) - 1)`` (16 for five levels).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        filters: Sequence[int] = (64, 128, 256, 512, 1024),
        deep_supervision: bool = False,
        classification_guided: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"UNet3Plus is 2D only, got spatial_dims={spatial_dims}; use spatial_dims=2.")
        filters = [int(f) for f in filters]
        if len(filters) < 2 or min(filters) < 1:
            raise ValueError(f"UNet3Plus filters must be at least two positive channel counts, got {filters}.")
        self.filters = filters
        self.divisor = 2 ** (len(filters) - 1)
        self.deep_supervision = deep_supervision
        self.classification_guided = classification_guided
        depth = len(filters)
        cat_channels = filters[0]
        up_channels = cat_channels * depth
        encoder = []
        for level, channels in enumerate(filters):
            previous = in_channels if level == 0 else filters[level - 1]
            encoder.append(nn.Sequential(*_conv_bn_relu(previous, channels), *_conv_bn_relu(channels, channels)))
        self.encoder = nn.ModuleList(encoder)
        # decoder levels from the second deepest (index depth - 2) up to full resolution (index 0)
        self.decoder = nn.ModuleList(_DecoderLevel(level, filters, cat_channels) for level in range(depth - 2, -1, -1))
        self.head = nn.Conv2d(up_channels, out_channels, 3, padding=1)
        heads = []
        if deep_supervision:  # decoder levels 1..depth-2, then the bottom
            heads = [nn.Conv2d(up_channels, out_channels, 3, padding=1) for _ in range(depth - 2)]
            heads.append(nn.Conv2d(filters[-1], out_channels, 3, padding=1))
        self.deep_supervision_heads = nn.ModuleList(heads)
        self.presence = (
            nn.Sequential(nn.Dropout(0.5), nn.Conv2d(filters[-1], 2, 1), nn.AdaptiveMaxPool2d(1))
            if classification_guided
            else nn.Identity()
        )

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_divisible(x, self.divisor, "UNet3Plus")
        features: list[torch.Tensor] = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            features.append(x)
        return features

    def _decode(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decoder outputs from full resolution (index 0) to the bottom (the deepest encoder map)."""
        depth = len(features)
        decoded: list[torch.Tensor] = [features[-1]]  # deepest first while building
        for step, level_block in enumerate(self.decoder):
            level = depth - 2 - step
            # sources in order of level: encoder maps 0..level, then decoder maps level+1..depth-1
            sources = features[: level + 1] + decoded[::-1]
            decoded.append(level_block(sources, [features[level].shape[-2], features[level].shape[-1]]))
        return decoded[::-1]

    def presence_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The classification-guided module's logits ``(batch, 2)``: organ absent / present.

        Raises:
            RuntimeError: the network was built with ``classification_guided=False``.
        """
        if not self.classification_guided:
            raise RuntimeError("UNet3Plus was built without the classification-guided module")
        return torch.flatten(self.presence(self._encode(x)[-1]), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x`` ``(batch, in_channels, H, W)``; see ``deep_supervision`` for the train-mode output."""
        size = [x.shape[-2], x.shape[-1]]
        features = self._encode(x)
        decoded = self._decode(features)
        outputs = [self.head(decoded[0])]
        if self.deep_supervision and self.training:
            for i, head in enumerate(self.deep_supervision_heads):
                side = head(decoded[i + 1])
                outputs.append(F.interpolate(side, size=size, mode="bilinear", align_corners=False))
        if self.classification_guided:
            decision = torch.argmax(torch.flatten(self.presence(features[-1]), 1), dim=1)
            weight = decision.to(outputs[0].dtype).view(-1, 1, 1, 1)
            outputs = [out * weight for out in outputs]
        if len(outputs) == 1:
            return outputs[0]
        return torch.stack(outputs, dim=1)
