"""One MLflow run, written so that tracking never stops training.

:class:`RunRecorder` opens (or re-opens, by name) a run and sends params, tags, metrics, artifacts and dataset inputs
to it. Everything sent is kept in a journal; when the store fails (an unreachable or hung server, a corrupt or
read-only SQLite file) the recorder moves the run to a local store, replays the journal there and goes on, with one
warning that says where the run now is:

- a server (``http(s)://``) falls back to the local store ``$MEDSEG_HOME/mlflow.db`` (``medseg sync`` copies it back
  later); requests are bounded (:data:`medseg.tracking.store.HTTP_LIMITS`), so a dead server costs seconds;
- a local store that cannot be opened or written falls back to a fresh store next to the run's outputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from medseg.tracking import store

logger = logging.getLogger(__name__)
FALLBACK_TAG = "medseg.tracking_fallback_from"
FALLBACK_RUN_TAG = "medseg.tracking_fallback_run_id"
MAX_PARAM_CHARS = 500
MAX_TAG_CHARS = 5000
BATCH = 1000  # MLflow's log_batch limit on metrics
MAX_FALLBACKS = 3


class RunRecorder:
    """Open one MLflow run and write to it, falling back to a local store when the store fails.

    Args:
        tracking_uri: the resolved tracking URI.
        experiment_name: created when missing (its artifacts beside a SQLite file, see ``store.artifact_location``).
        run_name: an unfinished run of this name is re-opened (a resumed training, a child run prepared by a
            parent); otherwise a new run is created.
        experiment_description: the experiment's description (``mlflow.note.content``) when it has none.
        fallback_near: a folder for a fresh store when the local store itself fails (the run's ``output_dir``).
        on_switch: called with the new URI after a fallback (system metrics follow the run there).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        run_name: str,
        experiment_description: str | None = None,
        fallback_near: str | Path | None = None,
        on_switch: Callable[[str], None] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.experiment_description = experiment_description
        self.fallback_near = fallback_near
        self.on_switch = on_switch
        self.client: Any = None
        self.experiment_id: str | None = None
        self.run_id: str | None = None
        self.fallback_from: str | None = None
        self.abandoned_run: tuple[str, str] | None = None  # (uri, run id) left behind on a failed store
        self.journal: list[tuple[str, Any]] = []
        self.initial_tags: dict[str, str] = {}
        self.fallbacks = 0
        self.disabled = False

    @property
    def is_open(self) -> bool:
        return self.run_id is not None

    # ------------------------------------------------------------------ opening
    def open(self, tags: dict[str, Any] | None = None) -> str:
        """Open the run (falling back as described in the module docstring); returns the run id."""
        self.initial_tags = {k: str(v)[:MAX_TAG_CHARS] for k, v in (tags or {}).items()}
        if store.is_remote(self.tracking_uri) and not store.server_reachable(self.tracking_uri, 5.0):
            self._fall_back("no connection within 5 s", reopen=False)
        self._open_with_fallback()
        return self.run_id

    def _open_here(self) -> None:
        self.client = store.open_client(self.tracking_uri)
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            self.experiment_id = self.client.create_experiment(
                self.experiment_name, artifact_location=store.artifact_location(self.tracking_uri)
            )
        else:
            self.experiment_id = experiment.experiment_id
        if self.experiment_description and not (experiment and experiment.tags.get("mlflow.note.content")):
            self.client.set_experiment_tag(self.experiment_id, "mlflow.note.content", self.experiment_description)
        unfinished = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"attributes.run_name = '{_quoted(self.run_name)}' and attributes.status != 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if unfinished:
            self.run_id = unfinished[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            if self.initial_tags:
                self._send("tags", self.initial_tags)
        else:
            run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=self.initial_tags)
            self.run_id = run.info.run_id

    def _fall_back(self, reason: str, reopen: bool = True) -> None:
        """Move to a local store: the default one for a server, a fresh one for a failed local store.

        After :data:`MAX_FALLBACKS` moves the run is given up (an error is logged) and training goes on untracked.
        """
        failed = self.tracking_uri
        self.fallbacks += 1
        if self.fallbacks > MAX_FALLBACKS:
            logger.error("MLflow: the fallback store %s failed too (%s); this run is no longer tracked", failed, reason)
            self.client, self.run_id, self.disabled = None, None, True
            return
        if store.is_remote(failed):
            target = store.local_store_uri()
            where = f"the local store {target}"
        else:
            target = store.fresh_store_uri(self.fallback_near)
            where = f"a fresh local store {target}"
        if self.run_id is not None and self.abandoned_run is None:
            self.abandoned_run = (failed, self.run_id)
        if self.fallback_from is None:
            self.fallback_from = failed
        self.tracking_uri = target
        logger.warning(
            "MLflow: the tracking store %s failed (%s). Training goes on; run %s is written to %s; see it with: "
            "mlflow ui --backend-store-uri %s%s",
            failed,
            reason,
            self.run_name,
            where,
            target,
            "; copy it to the server later with: medseg sync" if store.is_remote(failed) else "",
        )
        self.initial_tags[FALLBACK_TAG] = self.fallback_from
        if self.abandoned_run:
            self.initial_tags[FALLBACK_RUN_TAG] = self.abandoned_run[1]
        self.client, self.run_id = None, None
        if self.on_switch is not None:
            self.on_switch(target)
        if reopen:
            self._open_with_fallback()
            if not self.is_open:
                return
            journal, self.journal = self.journal, []
            for what, payload in journal:
                self._send(what, payload)
                self.journal.append((what, payload))

    def _open_with_fallback(self) -> None:
        while not self.disabled:
            try:
                self._open_here()
                return
            except Exception as error:
                self._fall_back(_describe(error), reopen=False)

    # ------------------------------------------------------------------ writing
    def _send(self, what: str, payload: Any) -> None:
        import mlflow

        if what == "params":
            existing = self.client.get_run(self.run_id).data.params
            entries = [mlflow.entities.Param(k, v) for k, v in payload.items() if k not in existing]
            for start in range(0, len(entries), 100):  # MLflow's batch limit on params
                self.client.log_batch(self.run_id, params=entries[start : start + 100])
        elif what == "tags":
            self.client.log_batch(self.run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in payload.items()])
        elif what == "metrics":
            entries = [mlflow.entities.Metric(k, v, stamp, step) for k, v, stamp, step in payload]
            for start in range(0, len(entries), BATCH):
                self.client.log_batch(self.run_id, metrics=entries[start : start + BATCH])
        elif what == "artifact":
            path, folder = payload
            self.client.log_artifact(self.run_id, str(path), folder)
        elif what == "inputs":
            self.client.log_inputs(self.run_id, datasets=payload)
        elif what == "call":  # a function of (client, run_id, tracking_uri), e.g. logging a model
            payload(self.client, self.run_id, self.tracking_uri)

    def send(self, what: str, payload: Any) -> None:
        """Send one item; on a store error move the run (see the module docstring) and send it there."""
        if not self.is_open:
            return
        try:
            self._send(what, payload)
        except Exception as error:
            if not is_store_failure(error):  # a bad request (e.g. a param changed value): this item only
                logger.warning("MLflow: %s not recorded in run %s (%s)", what, self.run_name, _describe(error))
                return
            self._fall_back(_describe(error))
            if not self.is_open:
                return
            self._send(what, payload)
        if what not in ("artifact", "call"):  # replayed after a fallback; artifacts are logged at the end
            self.journal.append((what, payload))

    def log_params(self, params: dict[str, Any]) -> None:
        """Params as strings (cut to 500 characters); a param already logged keeps its first value."""
        if params:
            self.send("params", {k: _text(v, MAX_PARAM_CHARS) for k, v in params.items() if v is not None})

    def log_tags(self, tags: dict[str, Any]) -> None:
        if tags:
            self.send("tags", {k: _text(v, MAX_TAG_CHARS) for k, v in tags.items() if v is not None})

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        if metrics:
            stamp = int(time.time() * 1000)
            self.send("metrics", [(k, float(v), stamp, int(step)) for k, v in metrics.items()])

    def log_series(self, name: str, points: Iterable[tuple[int, float]]) -> None:
        """One metric at many steps (e.g. the learning rate of every iteration)."""
        stamp = int(time.time() * 1000)
        entries = [(name, float(value), stamp, int(step)) for step, value in points]
        if entries:
            self.send("metrics", entries)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.send("artifact", (Path(path), folder))

    def log_inputs(self, datasets: list[Any]) -> None:
        if datasets:
            self.send("inputs", datasets)

    def call(self, function: Callable[[Any, str, str], Any]) -> None:
        """Run ``function(client, run_id, tracking_uri)`` against the run's store (with the same fallback)."""
        self.send("call", function)

    def history(self) -> dict[str, list[tuple[int, float]]]:
        """The run's metric histories as logged so far (for a resumed run)."""
        data = self.client.get_run(self.run_id).data
        return {
            key: [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, key)] for key in data.metrics
        }

    # ------------------------------------------------------------------ closing
    def finish(self, status: str) -> None:
        """End the run with ``status``; the run left on a failed server is ended too when it answers again."""
        if not self.is_open:
            return
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception as error:
            logger.error("MLflow: could not end run %s as %s (%s)", self.run_name, status, _describe(error))
        logger.info("MLflow: run %s (%s) ended %s in %s", self.run_name, self.run_id, status, self.tracking_uri)
        self._end_abandoned_run()
        store.dispose(self.tracking_uri)
        self.run_id = None

    def _end_abandoned_run(self) -> None:
        """A run begun on a server that went away stays RUNNING there: end it KILLED, pointing at the local copy."""
        if self.abandoned_run is None:
            return
        uri, run_id = self.abandoned_run
        if store.is_remote(uri) and not store.server_reachable(uri, 2.0):
            return  # still away: ``medseg sync`` ends it when it copies the local run
        try:
            client = store.open_client(uri)
            client.set_tag(run_id, "medseg.moved_to", f"{self.tracking_uri} run {self.run_id}")
            client.set_terminated(run_id, "KILLED")
        except Exception:
            pass


# MLflow answers that are about the request, not the store: falling back to another store would not help
REQUEST_ERRORS = {
    "RESOURCE_DOES_NOT_EXIST",
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_ALREADY_EXISTS",
    "BAD_REQUEST",
    "INVALID_STATE",
    "PERMISSION_DENIED",
    "RESOURCE_LIMIT_EXCEEDED",
}


def is_store_failure(error: BaseException) -> bool:
    """Whether ``error`` says the store is unusable (unreachable, timed out, corrupt, read-only, server error)
    rather than that one request was wrong."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        text = str(error).lower()
        if any(word in text for word in ("readonly", "read-only", "malformed", "not a database", "unable to open")):
            return True
        return error.error_code not in REQUEST_ERRORS
    module = type(error).__module__ or ""
    return isinstance(error, (OSError, TimeoutError)) or module.startswith(
        ("requests", "urllib3", "sqlalchemy", "sqlite3")
    )


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def _quoted(text: str) -> str:
    return str(text).replace("'", "\\'")


def _text(value: Any, limit: int) -> str:
    import json

    text = json.dumps(value) if isinstance(value, (list, dict, bool, tuple)) or value is None else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
