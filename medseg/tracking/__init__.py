"""MLflow tracking for medseg: every MLflow call of the project is in this package.

Cheap to import (no MLflow, torch or MONAI at import time), so bundle expressions and the CLI can use it:

- :func:`resolve_tracking_uri`, :func:`local_store_uri`, :func:`medseg_home`: the store (``$MEDSEG_HOME/mlflow.db``);
- :func:`experiment_name`, :func:`run_name`: naming;
- :func:`executed_config`, :func:`datalist_name`: what a bundle hands the handler;
- :data:`EXECUTE_CONFIG_SETTINGS`: MONAI ``tracking`` settings that only export the executed config.

Modules: ``store`` (URIs, bounded HTTP, locked SQLite creation, fallback stores), ``recorder`` (one run, with
fallback), ``engines`` (params from the live engines, metric names), ``datasets`` (``mlflow.data`` inputs),
``models`` (logged models, registry, :func:`~medseg.tracking.models.resolve_model_checkpoint`), ``system`` (system
metrics), ``signals`` (SIGTERM), ``locks`` (one training per output folder), ``nested`` (parent and child runs),
``readback`` (a run back as a checkpoint and record), ``sync`` (local runs to a server), ``compare``
(``medseg compare``), ``plots``. The ignite handler is :class:`medseg.handlers.tracking.MLflowTracking`.
"""

from medseg.tracking.bundle import config_params, datalist_name, executed_config, run_tags
from medseg.tracking.naming import experiment_name, run_name
from medseg.tracking.store import local_store_uri, medseg_home, resolve_tracking_uri

# ``tracking=`` settings for ``monai.bundle.run`` that add no handler but make MONAI export the executed config
# (``save_execute_config``), which the bundle hands to the handler: what medseg's commands pass
EXECUTE_CONFIG_SETTINGS: dict = {"handlers_id": {}, "configs": {}}


def resolve_model_checkpoint(run_or_model_uri: str, tracking_uri: str | None = None, work_dir=None):
    """The best checkpoint and run record behind a run id or model URI (see :mod:`medseg.tracking.models`)."""
    from medseg.tracking.models import resolve_model_checkpoint as resolve

    return resolve(run_or_model_uri, tracking_uri, work_dir)


__all__ = [
    "EXECUTE_CONFIG_SETTINGS",
    "config_params",
    "datalist_name",
    "executed_config",
    "experiment_name",
    "local_store_uri",
    "medseg_home",
    "resolve_model_checkpoint",
    "resolve_tracking_uri",
    "run_name",
    "run_tags",
]
