"""MLflow parent and child runs for the commands that run a bundle several times (progressive, k-fold, sweep).

The implementation lives in :mod:`medseg.tracking.nested` (every MLflow call is in ``medseg.tracking``); the names
stay importable from here.
"""

from medseg.tracking.nested import PARENT_TAG, ParentRun

__all__ = ["PARENT_TAG", "ParentRun"]
