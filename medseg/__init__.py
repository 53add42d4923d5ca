"""medseg: a MONAI pipeline for 2D medical image segmentation.

Importing ``medseg`` is cheap: subpackages (``medseg.networks``, ``medseg.metrics``, ...) import torch and
MONAI only when they are used.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medseg")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
