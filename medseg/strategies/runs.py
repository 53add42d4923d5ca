"""MLflow parent and child runs for the commands that run a bundle several times (progressive, k-fold, sweep).

The command opens the parent run, then creates each child run (tag ``mlflow.parentRunId``, MLflow's nesting) with
a unique name *before* running the bundle, and passes that name as ``--run_name``: the bundle's
:class:`medseg.handlers.tracking.MLflowTracking` (like MONAI's ``MLFlowHandler``) reuses the unfinished run of that
name, so the bundle logs into the child without any change to the handler. A bundle without the tracking block
still gets its child run, holding what the command itself logs.
"""

from __future__ import annotations

import logging
from typing import Any

from medseg.tracking import store

logger = logging.getLogger(__name__)
PARENT_TAG = "mlflow.parentRunId"


class ParentRun:
    """A parent MLflow run, used as a context manager: ``with ParentRun(...) as parent: parent.child(...)``.

    Ends FINISHED, FAILED (error in the ``medseg.error`` tag) or KILLED (Ctrl-C), like a bundle run.

    Args:
        experiment_name: the experiment (the children's too: MLflow nests runs within one experiment).
        run_name: the parent's name.
        tracking_uri: None resolves ``MLFLOW_TRACKING_URI``, then the local store.
        tags: extra tags (``medseg.strategy`` is always set by the commands).
        params: params of the parent run.
    """

    def __init__(
        self,
        experiment_name: str,
        run_name: str,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.tracking_uri = store.resolve_tracking_uri(tracking_uri)
        if store.is_remote(self.tracking_uri) and not store.server_reachable(self.tracking_uri):
            local = store.local_store_uri()
            logger.warning("MLflow server %s cannot be reached; runs go to %s", self.tracking_uri, local)
            self.tracking_uri = local
        self.experiment_name, self.run_name = experiment_name, run_name
        self.tags, self.params = dict(tags or {}), dict(params or {})
        self.client: Any = None
        self.experiment_id = ""
        self.run_id = ""
        self.children: list[str] = []

    def __enter__(self) -> ParentRun:
        import mlflow

        store.quiet_mlflow()
        self.client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        self.experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(
                self.experiment_name, artifact_location=store.artifact_location(self.tracking_uri)
            )
        )
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=_strings(self.tags))
        self.run_id = run.info.run_id
        self.log_params(self.params)
        return self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        status = "FINISHED" if error is None else "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        if error is not None:
            self.client.set_tag(self.run_id, "medseg.error", f"{type(error).__name__}: {error}"[:5000])
        for child in self.children:  # a child left open by a crash ends with its parent
            self.end_child(child, status)
        self.client.set_terminated(self.run_id, status)

    def child(
        self, label: str, tags: dict[str, Any] | None = None, params: dict[str, Any] | None = None
    ) -> tuple[str, str]:
        """Create a child run (RUNNING) for the bundle to log into.

        Args:
            label: what the child is (``fold0``, ``stage1-128px``, ``loss=dice,lr=0.001``), part of its name.
            tags: extra tags.
            params: params known before the bundle runs (the grid point, the fold, the stage).

        Returns:
            ``(run_name, run_id)``; pass the name to the bundle as ``run_name``.
        """
        name = f"{self.run_name}-{label}"  # unique: the parent's name is
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags=_strings({PARENT_TAG: self.run_id, **(tags or {})})
        )
        self.children.append(run.info.run_id)
        if params:
            self.log_params(params, run.info.run_id)
        return name, run.info.run_id

    def end_child(self, run_id: str, status: str = "FINISHED") -> None:
        """End a child the bundle left open (a bundle without the tracking block never closes it)."""
        if self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_terminated(run_id, status)

    def log_params(self, params: dict[str, Any], run_id: str | None = None) -> None:
        """Log params (values as strings, at most 500 characters) to the parent or to ``run_id``."""
        import mlflow

        entries = [mlflow.entities.Param(k, str(v)[:500]) for k, v in params.items() if v is not None]
        if entries:
            self.client.log_batch(run_id or self.run_id, params=entries)

    def log_metrics(self, metrics: dict[str, float], run_id: str | None = None, step: int = 0) -> None:
        """Log metrics (one point each) to the parent or to ``run_id``."""
        import time

        import mlflow

        stamp = int(time.time() * 1000)
        entries = [mlflow.entities.Metric(k, float(v), stamp, step) for k, v in metrics.items() if v is not None]
        if entries:
            self.client.log_batch(run_id or self.run_id, metrics=entries)

    def log_series(self, series: dict[str, list[float]], run_id: str | None = None) -> None:
        """Log curves (step = index) in batches, to the parent or to ``run_id``."""
        import time

        import mlflow

        stamp = int(time.time() * 1000)
        entries = [mlflow.entities.Metric(k, float(v), stamp, i) for k, vs in series.items() for i, v in enumerate(vs)]
        for start in range(0, len(entries), 1000):  # MLflow's batch limit
            self.client.log_batch(run_id or self.run_id, metrics=entries[start : start + 1000])

    def log_artifact(self, path: str, folder: str | None = None, run_id: str | None = None) -> None:
        """Log a file to the parent or to ``run_id``."""
        self.client.log_artifact(run_id or self.run_id, str(path), folder)

    def tracking_overrides(self, child_name: str) -> dict[str, str]:
        """The bundle overrides that send a bundle run into the child ``child_name``."""
        return {"tracking_uri": self.tracking_uri, "experiment_name": self.experiment_name, "run_name": child_name}


def _strings(values: dict[str, Any]) -> dict[str, str]:
    return {k: str(v)[:5000] for k, v in values.items() if v is not None}
