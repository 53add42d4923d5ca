"""The factor by which a network's input height and width must be divisible."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

__all__ = ["nearest_multiple", "size_divisor"]


def _total_stride(strides: Sequence) -> int:
    """Product of per-level strides (ints or per-dimension sequences), as one factor valid for every dimension."""
    per_dim: list[int] | None = None
    for stride in strides:
        values = [int(s) for s in stride] if isinstance(stride, Sequence) else [int(stride)]
        if per_dim is None:
            per_dim = [1] * len(values)
        if len(values) == 1:
            values = values * len(per_dim)
        if len(per_dim) == 1 and len(values) > 1:
            per_dim = per_dim * len(values)
        per_dim = [p * v for p, v in zip(per_dim, values, strict=True)]
    return math.lcm(*per_dim) if per_dim else 1


def size_divisor(network: nn.Module) -> int:
    """The factor the input's spatial sizes must be multiples of, so that transforms or inferers can pad to it.

    Pad with ``DivisiblePadd(k=size_divisor(net))`` and invert it after inference. FlexibleUNet's ``is_pad`` is no
    substitute: it pads upsampled features by one pixel, which does not fix the ceil-halving of strided convolutions.

    Args:
        network: a MONAI ``FlexibleUNet``, ``UNet``, ``AttentionUnet``, ``DynUNet``, ``BasicUNet``, ``SegResNet``
            or ``SwinUNETR``, or medseg's ``FPN`` (32), ``UNet3Plus`` (16 for five levels), ``CourseworkUNet`` (8 for
            three stages), ``DeepLabV3`` / ``DeepLabV3Plus`` (the output stride), possibly wrapped in DataParallel.

    Returns:
        e.g. 32 for a 5-level FlexibleUNet, ``2 ** levels`` for a UNet with stride 2 per level.

    Raises:
        TypeError: for a network whose downsampling this function does not know.
    """
    from monai.networks import nets

    from medseg.networks.coursework_unet import CourseworkUNet
    from medseg.networks.deeplab import DeepLabV3, DeepLabV3Plus
    from medseg.networks.fpn import FPN
    from medseg.networks.unet3plus import UNet3Plus

    inner = getattr(network, "module", None)
    model = inner if isinstance(inner, nn.Module) else network
    if isinstance(model, nets.FlexibleUNet):
        from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

        return 2 ** FLEXUNET_BACKBONE.register_dict[model.backbone]["feature_number"]
    if isinstance(model, (nets.UNet, nets.AttentionUnet, nets.DynUNet)):
        return _total_stride(model.strides)
    if isinstance(model, nets.BasicUNet):
        return 16  # four max-pooling levels
    if isinstance(model, nets.SegResNet):
        return 2 ** (len(model.blocks_down) - 1)
    if isinstance(model, nets.SwinUNETR):
        return 32
    if isinstance(model, FPN):
        return 32  # the encoder's output stride, as segmentation_models_pytorch requires
    if isinstance(model, (UNet3Plus, CourseworkUNet)):
        return model.divisor
    if isinstance(model, (DeepLabV3, DeepLabV3Plus)):
        return model.output_stride  # any size runs (the output is resized); multiples align features with pixels
    raise TypeError(
        f"size_divisor does not know how {type(model).__name__} downsamples; pass the factor (the product of its "
        "strides) to DivisiblePadd(k=...) yourself."
    )


def nearest_multiple(size: float, divisor: int) -> int:
    """``size`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``): a spatial size the network
    takes, e.g. ``nearest_multiple(0.75 * 224, size_divisor(net))`` is 160 for a 5-level FlexibleUNet."""
    return max(divisor, int(round(size / divisor)) * divisor)
