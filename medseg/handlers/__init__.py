"""Ignite handlers that bundle configs use by ``_target_``.

Modules are imported on use (``medseg.handlers.metrics``, ``medseg.handlers.report`` and
``medseg.handlers.tracking`` import heavier libraries); the light handlers the bundles name are exported here.
"""

from medseg.handlers.checkpoint import BundleCheckpointLoader
from medseg.handlers.early_stopping import SmoothedScore
from medseg.handlers.input_errors import InputErrorHandler
from medseg.handlers.postprocessing import ChooseAtTrainingEnd, ChoosePostprocessing
from medseg.handlers.progressive_resizing import ProgressiveResizing
from medseg.handlers.time_budget import TimeBudget
from medseg.handlers.weight_average import WeightAverage

__all__ = [
    "BundleCheckpointLoader",
    "ChooseAtTrainingEnd",
    "ChoosePostprocessing",
    "InputErrorHandler",
    "ProgressiveResizing",
    "SmoothedScore",
    "TimeBudget",
    "WeightAverage",
]
