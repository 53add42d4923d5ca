"""MLflow tracking for medseg bundles: where runs go, how they are named, what they record.

Cheap to import (no MLflow, torch or MONAI at import time), so bundle expressions and the CLI can use it:

- :func:`resolve_tracking_uri`, :func:`local_store_uri`, :func:`medseg_home`: the store (``$MEDSEG_HOME/mlflow.db``);
- :func:`experiment_name`, :func:`run_name`: naming;
- :func:`executed_config`, :func:`datalist_name`: what a bundle expression hands the handler.

The ignite handler is :class:`medseg.handlers.tracking.MLflowTracking`; ``medseg compare`` reads runs back.
"""

from medseg.tracking.bundle import config_params, datalist_name, executed_config, run_tags
from medseg.tracking.naming import experiment_name, run_name
from medseg.tracking.store import local_store_uri, medseg_home, resolve_tracking_uri

__all__ = [
    "config_params",
    "datalist_name",
    "executed_config",
    "experiment_name",
    "local_store_uri",
    "medseg_home",
    "resolve_tracking_uri",
    "run_name",
    "run_tags",
]
