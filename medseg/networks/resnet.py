"""ResNet encoders for MONAI's ``FlexibleUNet`` with torchvision's layout (``"tv_resnet18"``, ``"tv_resnet34"``, ...).

MONAI's built-in ``"resnet18"``/``"resnet34"`` backbones work in 2D, but they follow MedicalNet, not torchvision: their
stride-2 blocks use parameter-free shortcuts (type "A": subsample and zero-pad channels) where torchvision's use a 1x1
convolution with batch norm (type "B"). torchvision's ImageNet files (``resnet34-b627a593.pth``) therefore hold 18
tensors (``layer2.0.downsample.*`` ...) that MONAI's ``"resnet34"`` has no place for, and the pretrained network cannot
be reproduced with it. The encoders here are MONAI's own ``ResNet`` built with type "B" shortcuts without bias, which
is exactly torchvision's architecture with identical state dict keys; they are registered in ``FLEXUNET_BACKBONE`` as
``"tv_resnet18"``, ``"tv_resnet34"`` and ``"tv_resnet50"``.
"""

from __future__ import annotations

from monai.networks.blocks import BaseEncoder
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from monai.networks.nets.resnet import ResNet, ResNetFeatures, get_inplanes

from medseg.networks.mobilenet import PRETRAINED_DOWNLOAD_ERROR

__all__ = ["TorchvisionResNetEncoder"]

# name -> (block, blocks per stage, torchvision's weights file)
_TORCHVISION_RESNETS = {
    "tv_resnet18": ("basic", [2, 2, 2, 2], "resnet18-f37072fd.pth"),
    "tv_resnet34": ("basic", [3, 4, 6, 3], "resnet34-b627a593.pth"),
    "tv_resnet50": ("bottleneck", [3, 4, 6, 3], "resnet50-11ad3fa6.pth"),
}


class TorchvisionResNetEncoder(ResNetFeatures, BaseEncoder):
    """MONAI's ResNet feature extractor with torchvision's architecture, for ``FlexibleUNet``.

    The forward pass is MONAI's ``ResNetFeatures.forward``: five feature maps at strides 2, 4, 8, 16 and 32 (after the
    stem, then after each of the four stages).

    Args:
        model_name: one of ``"tv_resnet18"``, ``"tv_resnet34"``, ``"tv_resnet50"``.
        pretrained: must be False; True raises (medseg never downloads weights).
        spatial_dims: number of spatial dimensions (ImageNet weights fit 2 only).
        in_channels: number of input channels.

    Raises:
        ValueError: for ``pretrained=True`` or an unknown ``model_name``.
    """

    backbone_names = list(_TORCHVISION_RESNETS)

    def __init__(
        self, model_name: str = "tv_resnet34", pretrained: bool = False, spatial_dims: int = 2, in_channels: int = 3
    ) -> None:
        if model_name not in _TORCHVISION_RESNETS:
            raise ValueError(f"unknown torchvision-layout ResNet {model_name!r}; available: {self.backbone_names}.")
        block, layers, weights_file = _TORCHVISION_RESNETS[model_name]
        if pretrained:
            raise ValueError(PRETRAINED_DOWNLOAD_ERROR.format(weights_file=weights_file))
        # ResNetFeatures.__init__ would pick MONAI's MedicalNet settings for the depth; build the ResNet directly with
        # torchvision's (7x7 stride-2 stem, max pool, type "B" shortcuts without bias, no classifier) and keep
        # ResNetFeatures' forward.
        ResNet.__init__(
            self,
            block=block,
            layers=layers,
            block_inplanes=get_inplanes(),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            feed_forward=False,
            bias_downsample=False,
        )

    @classmethod
    def get_encoder_parameters(cls) -> list[dict]:
        """Initialisation parameters of each registered encoder (FlexibleUNet overrides the last three keys)."""
        names = cls.backbone_names
        return [{"model_name": name, "pretrained": False, "spatial_dims": 2, "in_channels": 3} for name in names]

    @classmethod
    def num_channels_per_output(cls) -> list[tuple[int, ...]]:
        """Channels of the five feature maps of each registered encoder."""
        return [(64, 64, 128, 256, 512), (64, 64, 128, 256, 512), (64, 256, 512, 1024, 2048)]

    @classmethod
    def num_outputs(cls) -> list[int]:
        """Number of feature maps of each registered encoder."""
        return [5] * len(cls.backbone_names)

    @classmethod
    def get_encoder_names(cls) -> list[str]:
        """Names under which the encoders are registered in ``FLEXUNET_BACKBONE``."""
        return list(cls.backbone_names)


FLEXUNET_BACKBONE.register_class(TorchvisionResNetEncoder)
