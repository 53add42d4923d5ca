"""Dictionary transforms that MONAI lacks, used by the bundles' preprocessing by ``_target_``; label-map helpers."""

from medseg.transforms.annotations import AnnotatedMaskd
from medseg.transforms.artefacts import RandSkinArtefactsd
from medseg.transforms.checks import CheckChannelsd, CheckLabelRanged, SqueezeSliced, source_of
from medseg.transforms.labels import ArgmaxLabelsd, channel_argmax
from medseg.transforms.resize import AntialiasedResize, AntialiasedResized

__all__ = [
    "AnnotatedMaskd",
    "AntialiasedResize",
    "AntialiasedResized",
    "ArgmaxLabelsd",
    "CheckChannelsd",
    "CheckLabelRanged",
    "RandSkinArtefactsd",
    "SqueezeSliced",
    "channel_argmax",
    "source_of",
]
