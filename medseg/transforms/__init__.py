"""Dictionary transforms that MONAI lacks, used by the bundles' preprocessing by ``_target_``."""

from medseg.transforms.annotations import AnnotatedMaskd
from medseg.transforms.checks import CheckChannelsd, CheckLabelRanged, SqueezeSliced, source_of

__all__ = ["AnnotatedMaskd", "CheckChannelsd", "CheckLabelRanged", "SqueezeSliced", "source_of"]
