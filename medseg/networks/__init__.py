"""Networks for medseg: encoders and architectures MONAI lacks, local pretrained weights, input size rules.

Importing this package registers in MONAI's ``FLEXUNET_BACKBONE``:

- ``"mobilenet_v2"``: torchvision's MobileNetV2 features (:class:`MobileNetV2Encoder`);
- ``"tv_resnet18"``, ``"tv_resnet34"``, ``"tv_resnet50"``: MONAI's ResNet with torchvision's architecture
  (:class:`TorchvisionResNetEncoder`), the ones torchvision's ImageNet files load into.

and provides the architectures of the published comparisons, which configs name by ``_target_``
(``"medseg.networks.UNet3Plus"``): :class:`FPN`, :class:`DeepLabV3`, :class:`DeepLabV3Plus`, :class:`UNet3Plus`,
:class:`CourseworkUNet` (see ``docs/networks.md``; :data:`NETWORKS` lists them by short name).
"""

from medseg.networks.coursework_unet import CourseworkUNet
from medseg.networks.deep_supervision import StackedDeepSupervisionLoss
from medseg.networks.deeplab import DeepLabV3, DeepLabV3Plus
from medseg.networks.fpn import FPN
from medseg.networks.mobilenet import MobileNetV2Encoder
from medseg.networks.registry import NETWORKS, UnknownNetworkError, get_network, variant_files
from medseg.networks.resnet import TorchvisionResNetEncoder
from medseg.networks.sizes import nearest_multiple, size_divisor
from medseg.networks.unet3plus import UNet3Plus
from medseg.networks.weights import adapt_input_conv, describe_layout, load_encoder_weights

__all__ = [
    "CourseworkUNet",
    "DeepLabV3",
    "DeepLabV3Plus",
    "FPN",
    "MobileNetV2Encoder",
    "NETWORKS",
    "StackedDeepSupervisionLoss",
    "TorchvisionResNetEncoder",
    "UNet3Plus",
    "UnknownNetworkError",
    "adapt_input_conv",
    "describe_layout",
    "get_network",
    "load_encoder_weights",
    "nearest_multiple",
    "size_divisor",
    "variant_files",
]


def __getattr__(name: str):
    """``medseg.networks.X`` for an unknown ``X``: one line listing the networks medseg provides."""
    networks = ", ".join(n for n in __all__ if n[0].isupper() and n != "NETWORKS" and not n.endswith(("Loss", "Error")))
    raise AttributeError(f"medseg.networks has no {name!r}; its networks and encoders are: {networks}")
