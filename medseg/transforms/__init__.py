"""Dictionary transforms that MONAI lacks, used by the bundles' preprocessing by ``_target_``."""

from medseg.transforms.checks import CheckChannelsd, CheckLabelRanged, SqueezeSliced, source_of

__all__ = ["CheckChannelsd", "CheckLabelRanged", "SqueezeSliced", "source_of"]
