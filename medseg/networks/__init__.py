"""Networks for medseg: encoders MONAI lacks, local pretrained weights, input size rules.

Importing this package registers in MONAI's ``FLEXUNET_BACKBONE``:

- ``"mobilenet_v2"``: torchvision's MobileNetV2 features (:class:`MobileNetV2Encoder`);
- ``"tv_resnet18"``, ``"tv_resnet34"``, ``"tv_resnet50"``: MONAI's ResNet with torchvision's architecture
  (:class:`TorchvisionResNetEncoder`), the ones torchvision's ImageNet files load into.

A bundle uses them with ``"imports": ["$import medseg.networks"]`` and ``"backbone": "mobilenet_v2"``; see
``docs/networks.md``.
"""

from medseg.networks.mobilenet import MobileNetV2Encoder
from medseg.networks.resnet import TorchvisionResNetEncoder
from medseg.networks.sizes import size_divisor
from medseg.networks.weights import adapt_input_conv, describe_layout, load_encoder_weights

__all__ = [
    "MobileNetV2Encoder",
    "TorchvisionResNetEncoder",
    "adapt_input_conv",
    "describe_layout",
    "load_encoder_weights",
    "size_divisor",
]
