"""A MobileNetV2 encoder for MONAI's ``FlexibleUNet``.

MONAI's ``FlexibleUNet`` ships EfficientNet and ResNet backbones; this module adds torchvision's MobileNetV2 (a light
encoder that trains fast on CPU) and registers it in ``FLEXUNET_BACKBONE`` under ``"mobilenet_v2"``, so a bundle config
can say ``"backbone": "mobilenet_v2"`` after ``"imports": ["$import medseg.networks"]``.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import BaseEncoder
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from torch import nn
from torchvision.models import mobilenet_v2

__all__ = ["MobileNetV2Encoder", "PRETRAINED_DOWNLOAD_ERROR"]

# FlexibleUNet passes ``pretrained`` straight to the encoder. Downloading is never allowed here (the pipeline must run
# offline and reproducibly), so the encoders answer ``pretrained=True`` with this message.
PRETRAINED_DOWNLOAD_ERROR = (
    "pretrained=True would download ImageNet weights, but medseg never downloads weights: build the network with "
    "pretrained=False and load a local weights file instead: "
    "medseg.networks.load_encoder_weights(network, '/path/to/{weights_file}') "
    "(in a bundle: set the config key 'encoder_weights' to that path)."
)


class MobileNetV2Encoder(nn.Module, BaseEncoder):
    """torchvision's MobileNetV2 feature extractor, returning five feature maps for ``FlexibleUNet``.

    The module keeps torchvision's ``features`` Sequential unchanged, so the state dict keys (``features.0.0.weight``,
    ...) are exactly those of torchvision's ``mobilenet_v2`` without the ``classifier``: the file torchvision caches
    (``mobilenet_v2-b0353104.pth``) loads with :func:`medseg.networks.load_encoder_weights`.

    The five outputs are taken where the resolution halves for the last time, as segmentation_models_pytorch does:
    strides 2, 4, 8, 16, 32 with 16, 24, 32, 96 and 1280 channels.

    Args:
        model_name: the registered name; only ``"mobilenet_v2"``.
        pretrained: must be False; True raises (medseg never downloads weights).
        spatial_dims: must be 2 (torchvision's MobileNetV2 is 2D only).
        in_channels: number of input channels; the first convolution is rebuilt when it is not 3.

    Raises:
        ValueError: for ``pretrained=True``, ``spatial_dims != 2``, an unknown ``model_name`` or ``in_channels < 1``.
    """

    backbone_names = ["mobilenet_v2"]

    def __init__(
        self, model_name: str = "mobilenet_v2", pretrained: bool = False, spatial_dims: int = 2, in_channels: int = 3
    ) -> None:
        super().__init__()
        if model_name not in self.backbone_names:
            raise ValueError(f"unknown MobileNetV2 encoder {model_name!r}; available: {self.backbone_names}.")
        if pretrained:
            raise ValueError(PRETRAINED_DOWNLOAD_ERROR.format(weights_file="mobilenet_v2-b0353104.pth"))
        if spatial_dims != 2:
            raise ValueError(
                f"the mobilenet_v2 backbone is 2D only, got spatial_dims={spatial_dims}; use spatial_dims=2 "
                "or a MONAI backbone that supports 3D (resnet*, efficientnet-*)."
            )
        if in_channels < 1:
            raise ValueError(f"in_channels must be at least 1, got {in_channels}.")
        self.features = mobilenet_v2(weights=None).features
        # indices in ``features`` after which a feature map is returned (strides 2, 4, 8, 16, 32); an instance
        # attribute of a plain type so that TorchScript can read it
        self.output_indices: list[int] = [1, 3, 6, 13, 18]
        if in_channels != 3:
            first = self.features[0][0]
            conv = nn.Conv2d(
                in_channels, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False
            )
            nn.init.kaiming_normal_(conv.weight, mode="fan_out")  # torchvision's initialisation of its convs
            self.features[0][0] = conv

    def forward(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """Run the feature extractor.

        Args:
            inputs: ``(batch, in_channels, height, width)``.

        Returns:
            five feature maps at strides 2, 4, 8, 16 and 32.
        """
        features: list[torch.Tensor] = []
        x = inputs
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.output_indices:
                features.append(x)
        return features

    @classmethod
    def get_encoder_parameters(cls) -> list[dict]:
        """Initialisation parameters of each registered encoder (FlexibleUNet overrides the three keys)."""
        return [{"model_name": n, "pretrained": False, "spatial_dims": 2, "in_channels": 3} for n in cls.backbone_names]

    @classmethod
    def num_channels_per_output(cls) -> list[tuple[int, ...]]:
        """Channels of the five feature maps."""
        return [(16, 24, 32, 96, 1280)]

    @classmethod
    def num_outputs(cls) -> list[int]:
        """Number of feature maps of each registered encoder."""
        return [5]

    @classmethod
    def get_encoder_names(cls) -> list[str]:
        """Names under which the encoders are registered in ``FLEXUNET_BACKBONE``."""
        return list(cls.backbone_names)


FLEXUNET_BACKBONE.register_class(MobileNetV2Encoder)
