"""FPN segmentation network (Kirillov et al., "Panoptic Feature Pyramid Networks", 2019) on medseg's encoders.

The encoder is any backbone registered in MONAI's ``FLEXUNET_BACKBONE`` (medseg's ``tv_resnet34``, ``tv_resnet18``,
``mobilenet_v2``; MONAI's ``efficientnet-b*``), so ``load_encoder_weights`` loads local ImageNet files into it exactly
as for ``FlexibleUNet``. The pyramid is MONAI's ``FeaturePyramidNetwork`` block (torchvision's FPN: 1x1 lateral
convolutions, nearest top-down upsampling, 3x3 output convolutions) on the stride-4 to stride-32 features. The
segmentation head is the one segmentation_models_pytorch's ``FPN`` uses (the published dermoscopy FPN): each
pyramid level goes through 3x3 conv - GroupNorm(32) - ReLU blocks, upsampled x2 after each, until stride 4; the
levels are summed, dropped out (2D dropout 0.2), classified by a 1x1 convolution and upsampled x4 bilinearly.

Input height and width must be multiples of 32 (the encoder's output stride), as in segmentation_models_pytorch.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork
from torch import nn

from medseg.networks._checks import check_divisible

__all__ = ["FPN"]


class _UpBlock(nn.Module):
    """3x3 conv - GroupNorm - ReLU, then (optionally) x2 bilinear upsampling."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.GroupNorm(32, out_channels),
            nn.ReLU(inplace=True),
        )
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        return x


class FPN(nn.Module):
    """Feature Pyramid Network for semantic segmentation on a ``FLEXUNET_BACKBONE`` encoder.

    Args:
        in_channels: input channels.
        out_channels: output channels (classes, background included).
        backbone: a name registered in ``FLEXUNET_BACKBONE`` with five feature maps at strides 2..32
            (``"tv_resnet34"``, ``"mobilenet_v2"``, ...); import ``medseg.networks`` to register medseg's.
        spatial_dims: must be 2.
        pretrained: must be False (medseg never downloads weights; use ``load_encoder_weights``).
        pyramid_channels: channels of the pyramid maps (256 as in the paper and smp).
        segmentation_channels: channels of the head's blocks (128, a multiple of 32 for GroupNorm).
        dropout: 2D dropout before the classifier (0.2 as in smp).

    Raises:
        ValueError: an unregistered backbone (the message lists the registered ones) or bad sizes.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 2,
        backbone: str = "tv_resnet34",
        spatial_dims: int = 2,
        pretrained: bool = False,
        pyramid_channels: int = 256,
        segmentation_channels: int = 128,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

        import medseg.networks  # noqa: F401  (registers medseg's encoders)

        if spatial_dims != 2:
            raise ValueError(f"FPN is 2D only, got spatial_dims={spatial_dims}; use spatial_dims=2.")
        registered = FLEXUNET_BACKBONE.register_dict
        if backbone not in registered:
            names = ", ".join(sorted(registered))
            raise ValueError(f"unknown FPN backbone {backbone!r}; registered backbones: {names}.")
        if segmentation_channels % 32:
            raise ValueError(f"segmentation_channels must be a multiple of 32 (GroupNorm), got {segmentation_channels}")
        entry = registered[backbone]
        if entry["feature_number"] != 5:
            raise ValueError(f"FPN needs a backbone with 5 feature maps; {backbone!r} has {entry['feature_number']}.")
        parameters = dict(entry["parameter"])
        parameters.update({"spatial_dims": spatial_dims, "in_channels": in_channels, "pretrained": pretrained})
        self.backbone = backbone
        self.encoder = entry["type"](**parameters)
        channels = list(entry["feature_channel"])[1:]  # strides 4, 8, 16, 32
        self.pyramid = FeaturePyramidNetwork(spatial_dims, channels, pyramid_channels)
        # level k (stride 4 * 2 ** k) is upsampled k times to stride 4; the stride-4 level gets one block, no upsampling
        self.seg_blocks = nn.ModuleList()
        for level in range(len(channels)):
            blocks = [_UpBlock(pyramid_channels, segmentation_channels, upsample=level > 0)]
            blocks += [_UpBlock(segmentation_channels, segmentation_channels, upsample=True) for _ in range(level - 1)]
            self.seg_blocks.append(nn.Sequential(*blocks))
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(segmentation_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x`` ``(batch, in_channels, H, W)`` (H, W multiples of 32) into ``(batch, out_channels, H, W)``."""
        check_divisible(x, 32, "FPN")
        features = self.encoder(x)
        levels: dict[str, torch.Tensor] = OrderedDict()
        for i in range(1, len(features)):
            levels["p" + str(i + 1)] = features[i]
        pyramid = list(self.pyramid(levels).values())
        merged = torch.zeros_like(pyramid[0][:, :1])  # broadcast start for the sum
        for i, block in enumerate(self.seg_blocks):
            merged = merged + block(pyramid[i])
        logits = self.head(self.dropout(merged))
        return F.interpolate(logits, size=[x.shape[-2], x.shape[-1]], mode="bilinear", align_corners=True)
