"""Parent and child runs for the commands that run a bundle several times (sweep, k-fold, progressive, lr-find).

MLflow's own nesting: the parent is opened with ``mlflow.start_run`` and every child with
``mlflow.start_run(nested=True)`` (tag ``mlflow.parentRunId``), so the UI shows the children folded under their
parent. The child is created *before* the bundle runs and its name is passed to the bundle as ``run_name``: the
bundle's :class:`medseg.handlers.tracking.MLflowTracking` re-opens the unfinished run of that name and logs into it.
A bundle without the tracking block still gets its child run, holding what the command itself logs.

When the parent ends it records which child was best (by the children's key metric, ``medseg.key_metric``): that
child's metrics and params are logged on the parent, ``summary/children.csv`` and the MLflow table
``summary/children.json`` list every child with its status, best value and the params that differ, and a registered
model of the best child gets the alias ``best``.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from medseg.tracking import naming, store

logger = logging.getLogger(__name__)
PARENT_TAG = "mlflow.parentRunId"
BEST_ALIAS = "best"


class ParentRun:
    """A parent MLflow run, used as a context manager: ``with ParentRun(...) as parent: parent.child(...)``.

    Ends FINISHED, FAILED (error in the ``medseg.error`` tag) or KILLED (Ctrl-C, SIGTERM), like a bundle run.

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
        store.bound_http_requests()
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
        self._env_uri: str | None = None

    def __enter__(self) -> ParentRun:
        import mlflow

        naming.release(self.run_name)
        self.client = store.open_client(self.tracking_uri)
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        self.experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(
                self.experiment_name, artifact_location=store.artifact_location(self.tracking_uri)
            )
        )
        self._env_uri = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.tracking_uri)
        run = mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=self.run_name,
            tags=_strings(self.tags),
            nested=mlflow.active_run() is not None,
            log_system_metrics=False,
        )
        self.run_id = run.info.run_id
        self.log_params(self.params)
        return self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        import mlflow

        from medseg.tracking.signals import Terminated

        killed = isinstance(error, (KeyboardInterrupt, Terminated)) or (
            isinstance(error, SystemExit) and error.code not in (0, None, 1)
        )
        status = "FINISHED" if error is None else "KILLED" if killed else "FAILED"
        try:
            if error is not None:
                self.client.set_tag(self.run_id, "medseg.error", f"{type(error).__name__}: {error}"[:5000])
            for child in self.children:  # a child left open by a crash ends with its parent
                self.end_child(child, status)
            try:
                self.summarize()
            except Exception as summary_error:  # the summary is a convenience: never hide the run's own outcome
                logger.warning("MLflow: no summary of the child runs (%s)", summary_error)
        finally:
            while mlflow.active_run() is not None and mlflow.active_run().info.run_id != self.run_id:
                mlflow.end_run()
            if mlflow.active_run() is not None:
                mlflow.end_run(status)
            else:
                self.client.set_terminated(self.run_id, status)
            mlflow.set_tracking_uri(self._env_uri)

    def child(
        self, label: str, tags: dict[str, Any] | None = None, params: dict[str, Any] | None = None
    ) -> tuple[str, str]:
        """Create a child run (RUNNING, nested under this one) for the bundle to log into.

        Args:
            label: what the child is (``fold0``, ``stage1-128px``, ``003``), part of its name.
            tags: extra tags.
            params: params known before the bundle runs (the grid point, the fold, the stage).

        Returns:
            ``(run_name, run_id)``; pass the name to the bundle as ``run_name``.
        """
        import mlflow

        name = f"{self.run_name}-{label}"  # unique: the parent's name is
        while mlflow.active_run() is not None and mlflow.active_run().info.run_id != self.run_id:
            mlflow.end_run()  # a previous child the caller did not end
        run = mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=name,
            nested=True,
            tags=_strings(tags or {}),
            log_system_metrics=False,
        )
        self.children.append(run.info.run_id)
        if params:
            self.log_params(params, run.info.run_id)
        return name, run.info.run_id

    def end_child(self, run_id: str, status: str = "FINISHED") -> None:
        """End a child: with the status its bundle gave it, or ``status`` if the bundle left it RUNNING."""
        import mlflow

        recorded = self.client.get_run(run_id).info.status
        final = status if recorded == "RUNNING" else recorded
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run(final)
        elif recorded == "RUNNING":
            self.client.set_terminated(run_id, final)

    def log_params(self, params: dict[str, Any], run_id: str | None = None) -> None:
        """Log params (values as strings, at most 500 characters) to the parent or to ``run_id``."""
        import mlflow

        target = run_id or self.run_id
        existing = self.client.get_run(target).data.params
        entries = [mlflow.entities.Param(k, str(v)[:500]) for k, v in params.items() if v is not None]
        entries = [e for e in entries if e.key not in existing]
        for start in range(0, len(entries), 100):
            self.client.log_batch(target, params=entries[start : start + 100])

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

    # ------------------------------------------------------------------ summary
    def summarize(self) -> dict | None:
        """Log the best child's metrics and params on the parent and the children's table (see module docstring).

        Returns:
            the best child's ``{"run_id", "metric", "value"}``, or None when no child has a key metric.
        """
        from medseg.tracking.compare import differing_params
        from medseg.tracking.engines import best_name

        children = [self.client.get_run(i) for i in self.children]
        if not children:
            return None
        keys = [c.data.tags.get("medseg.key_metric") for c in children]
        key = next((k for k in keys if k), None)
        scored = []
        for child in children:
            if key is None:
                break
            value = child.data.metrics.get(best_name(key), child.data.metrics.get(key))
            if value is not None:
                scored.append((value, child))
        varying = differing_params(children)
        rows = []
        for child in children:
            value = child.data.metrics.get(best_name(key), child.data.metrics.get(key)) if key else None
            rows.append(
                {
                    "run_name": child.info.run_name,
                    "run_id": child.info.run_id,
                    "status": child.info.status,
                    f"best {key or 'metric'}": value,
                    **{k: child.data.params.get(k) for k in varying},
                }
            )
        self._log_table(rows)
        if not scored:
            return None
        lower_is_better = "loss" in key.lower()
        value, best = min(scored, key=lambda s: s[0]) if lower_is_better else max(scored, key=lambda s: s[0])
        metrics = {k: v for k, v in best.data.metrics.items() if not k.startswith("system/")}
        self.log_metrics(metrics)
        self.log_params(dict(best.data.params))
        self.client.set_tag(self.run_id, "medseg.best_child_run_id", best.info.run_id)
        self.client.set_tag(self.run_id, "medseg.best_child_run_name", best.info.run_name)
        self.client.set_tag(self.run_id, "medseg.key_metric", key)
        registered = best.data.tags.get("medseg.registered_model", "")
        if registered.startswith("models:/"):
            name, version = registered[len("models:/") :].rsplit("/", 1)
            self.client.set_registered_model_alias(name, BEST_ALIAS, version)
            self.client.set_tag(self.run_id, "medseg.registered_model", f"models:/{name}@{BEST_ALIAS}")
        return {"run_id": best.info.run_id, "metric": key, "value": value}

    def _log_table(self, rows: list[dict]) -> None:
        with tempfile.TemporaryDirectory(prefix="medseg-summary-") as folder:
            path = Path(folder) / "children.csv"
            columns = list(dict.fromkeys(k for row in rows for k in row))
            with open(path, "w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
            self.client.log_artifact(self.run_id, str(path), "summary")
        table = {c: [row.get(c) for row in rows] for c in columns}
        self.client.log_table(self.run_id, data=table, artifact_file="summary/children.json")


def _strings(values: dict[str, Any]) -> dict[str, str]:
    return {k: str(v)[:5000] for k, v in values.items() if v is not None}
