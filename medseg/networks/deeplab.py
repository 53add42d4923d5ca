"""DeepLabV3 and DeepLabV3+ on torchvision ResNets, built from torchvision's segmentation code.

torchvision ships ``DeepLabV3`` (the model class), ``DeepLabHead`` and ``ASPP`` but builds them only on ResNet50/101
and MobileNetV3. The published cardiac comparison uses a ResNet18 backbone, so the networks here assemble torchvision's
pieces on ``torchvision.models.resnet18/34/50/101(weights=None)``:

- the stride-2 stages past the output stride are turned into dilated ones (torchvision's ``BasicBlock`` refuses
  ``replace_stride_with_dilation``, so ResNet18/34 are dilated after construction, as segmentation_models_pytorch
  does; ResNet50/101 use torchvision's own option);
- the first convolution takes ``in_channels`` (1 for MRI) instead of 3;
- the output is bilinearly resized to the input size, so any input size works; ``size_divisor`` gives the output
  stride (8 for DeepLabV3, 16 for DeepLabV3+) at which the feature grid aligns exactly with the pixels.

No weights are downloaded: ImageNet weights are not used (``weights=None``, ``weights_backbone=None``).

DeepLabV3+ (Chen et al. 2018) adds a decoder: the ASPP output (output stride 16, rates 6, 12, 18) is upsampled to
the stride-4 features of the first ResNet stage, concatenated with their 48-channel 1x1 projection and refined by two
3x3 conv - BN - ReLU before the classifier. torchvision has no V3+, so the decoder is written here with its ``ASPP``.

Train with batches of at least two images: the ASPP's global-pooling branch applies batch norm to one value per
channel and image, which fails in train mode on a batch of one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabHead
from torchvision.models.segmentation.deeplabv3 import DeepLabV3 as TorchvisionDeepLabV3

__all__ = ["DeepLabV3", "DeepLabV3Plus"]

_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")


def _dilate(stage: nn.Module, dilation: int) -> None:
    """Turn a ResNet stage's stride 2 into dilation (in place), keeping its parameters."""
    for module in stage.modules():
        if isinstance(module, nn.Conv2d):
            if module.stride == (2, 2):
                module.stride = (1, 1)
            if module.kernel_size == (3, 3):
                module.dilation = (dilation, dilation)
                module.padding = (dilation, dilation)


def _resnet(backbone: str, in_channels: int, output_stride: int) -> torchvision.models.ResNet:
    """A torchvision ResNet without weights, with ``in_channels`` inputs and the given output stride (8 or 16)."""
    if backbone not in _BACKBONES:
        raise ValueError(f"unknown DeepLab backbone {backbone!r}; choose one of {', '.join(_BACKBONES)}.")
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}.")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, got {in_channels}.")
    dilated = [False, output_stride == 8, True]
    builder = getattr(torchvision.models, backbone)
    if backbone in ("resnet50", "resnet101"):
        resnet = builder(weights=None, replace_stride_with_dilation=dilated)
    else:
        resnet = builder(weights=None)
        if dilated[1]:
            _dilate(resnet.layer3, 2)
        _dilate(resnet.layer4, 4 if dilated[1] else 2)
    if in_channels != 3:
        first = resnet.conv1
        resnet.conv1 = nn.Conv2d(in_channels, first.out_channels, 7, 2, 3, bias=False)
        nn.init.kaiming_normal_(resnet.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
    return resnet


def _deep_channels(backbone: str) -> tuple[int, int]:
    """Channels of the first and last ResNet stages."""
    return (64, 512) if backbone in ("resnet18", "resnet34") else (256, 2048)


class DeepLabV3(nn.Module):
    """DeepLabV3 (Chen et al. 2017): torchvision's ``DeepLabV3`` model and ``DeepLabHead`` on a dilated ResNet.

    Args:
        spatial_dims: must be 2.
        in_channels: input channels (1 for MRI: the first convolution is rebuilt).
        out_channels: output channels (classes, background included).
        backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"resnet101"`` (torchvision, no weights).
        output_stride: 8 (torchvision's default, ASPP rates 12, 24, 36) or 16 (rates 6, 12, 18).

    Returns logits of the input's size (the torchvision model's ``"out"``).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        backbone: str = "resnet18",
        output_stride: int = 8,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"DeepLabV3 is 2D only, got spatial_dims={spatial_dims}; use spatial_dims=2.")
        resnet = _resnet(backbone, in_channels, output_stride)
        rates = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
        self.backbone = backbone
        self.output_stride = output_stride
        self.model = TorchvisionDeepLabV3(
            IntermediateLayerGetter(resnet, return_layers={"layer4": "out"}),
            DeepLabHead(_deep_channels(backbone)[1], out_channels, rates),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x`` ``(batch, in_channels, H, W)`` into logits ``(batch, out_channels, H, W)``."""
        return self.model(x)["out"]


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ (Chen et al. 2018) on a dilated torchvision ResNet (output stride 16), with torchvision's ASPP.

    Args:
        spatial_dims: must be 2.
        in_channels: input channels (1 for MRI).
        out_channels: output channels (classes, background included).
        backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"resnet101"``.
        output_stride: 16 (the paper's, ASPP rates 6, 12, 18) or 8 (rates 12, 24, 36).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        backbone: str = "resnet18",
        output_stride: int = 16,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"DeepLabV3Plus is 2D only, got spatial_dims={spatial_dims}; use spatial_dims=2.")
        resnet = _resnet(backbone, in_channels, output_stride)
        low_channels, deep_channels = _deep_channels(backbone)
        rates = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
        self.backbone = backbone
        self.output_stride = output_stride
        self.features = IntermediateLayerGetter(resnet, return_layers={"layer1": "low", "layer4": "out"})
        self.aspp = nn.Sequential(
            ASPP(deep_channels, rates),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
        )
        self.project = nn.Sequential(nn.Conv2d(low_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.Conv2d(256 + 48, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Conv2d(256, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x`` ``(batch, in_channels, H, W)`` into logits ``(batch, out_channels, H, W)``."""
        features = self.features(x)
        low = self.project(features["low"])
        deep = F.interpolate(self.aspp(features["out"]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.decoder(torch.cat([deep, low], dim=1))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
