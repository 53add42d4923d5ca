"""Copy runs from a local store to a tracking server: the runs that went local while the server was away.

A run that fell back to the local store carries ``medseg.tracking_fallback_from=<server>``; :func:`sync_runs` copies
every such run (or the runs asked for) to the server: the experiment (by name), the run's name, times, status,
params, tags, full metric histories, dataset inputs and artifacts. The copy is tagged ``medseg.synced_from`` and
the local run ``medseg.synced_to`` (so a second sync skips it); the run that the server kept RUNNING when it went
away (``medseg.tracking_fallback_run_id``) is ended KILLED and points at the copy. Logged models and registry
entries are not copied (log them again from the copied checkpoint if needed); the checkpoint is.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import Any

from medseg.tracking import store
from medseg.tracking.recorder import BATCH, FALLBACK_RUN_TAG, FALLBACK_TAG

logger = logging.getLogger(__name__)
SYNCED_TO, SYNCED_FROM = "medseg.synced_to", "medseg.synced_from"


class SyncError(Exception):
    """A store cannot be used, or an asked-for run does not exist; the message says which and what to do."""


@dataclass
class Copied:
    source_run_id: str
    target_run_id: str
    run_name: str
    experiment: str


def pending_runs(source: Any, target_uri: str, run_ids: list[str] | None = None) -> list[Any]:
    """The runs to copy: ``run_ids``, else every run that fell back from ``target_uri`` and is not synced yet."""
    from mlflow.exceptions import MlflowException

    if run_ids:
        runs = []
        for run_id in run_ids:
            try:
                runs.append(source.get_run(run_id))
            except MlflowException:
                raise SyncError(f"no run {run_id} in the source store") from None
        return runs
    experiments = [e.experiment_id for e in source.search_experiments()]
    if not experiments:
        return []
    found = source.search_runs(experiments, filter_string=f"tags.`{FALLBACK_TAG}` = '{target_uri}'", max_results=5000)
    return [r for r in found if SYNCED_TO not in r.data.tags and r.info.status != "RUNNING"]


def copy_run(source: Any, target: Any, run: Any, target_uri: str, source_uri: str) -> Copied:
    """Copy one run (see the module docstring); returns the ids."""
    import mlflow

    experiment = source.get_experiment(run.info.experiment_id)
    found = target.get_experiment_by_name(experiment.name)
    experiment_id = found.experiment_id if found else target.create_experiment(experiment.name)
    tags = {k: v for k, v in run.data.tags.items() if k not in ("mlflow.runName",)}
    tags[SYNCED_FROM] = f"{source_uri} run {run.info.run_id}"
    copy = target.create_run(experiment_id, start_time=run.info.start_time, tags=tags, run_name=run.info.run_name)
    run_id = copy.info.run_id
    params = [mlflow.entities.Param(k, v) for k, v in run.data.params.items()]
    for start in range(0, len(params), 100):
        target.log_batch(run_id, params=params[start : start + 100])
    metrics = [m for key in run.data.metrics for m in source.get_metric_history(run.info.run_id, key)]
    for start in range(0, len(metrics), BATCH):
        target.log_batch(run_id, metrics=metrics[start : start + BATCH])
    if run.inputs and run.inputs.dataset_inputs:
        target.log_inputs(run_id, datasets=list(run.inputs.dataset_inputs))
    with tempfile.TemporaryDirectory(prefix="medseg-sync-") as folder:
        if source.list_artifacts(run.info.run_id):
            local = source.download_artifacts(run.info.run_id, "", folder)
            target.log_artifacts(run_id, local)
    target.set_terminated(run_id, run.info.status, end_time=run.info.end_time)
    source.set_tag(run.info.run_id, SYNCED_TO, f"{target_uri} run {run_id}")
    abandoned = run.data.tags.get(FALLBACK_RUN_TAG)
    if abandoned:
        try:
            if target.get_run(abandoned).info.status == "RUNNING":
                target.set_tag(abandoned, "medseg.moved_to", f"run {run_id}")
                target.set_terminated(abandoned, "KILLED")
        except Exception:  # the server never had it (it went away before the run was created)
            pass
    return Copied(run.info.run_id, run_id, run.info.run_name, experiment.name)


def sync_runs(target_uri: str, source_uri: str | None = None, run_ids: list[str] | None = None) -> list[Copied]:
    """Copy the runs that fell back from ``target_uri`` (or ``run_ids``) from ``source_uri`` to ``target_uri``.

    Args:
        target_uri: the server (or any store) to copy to.
        source_uri: the local store; None is ``$MEDSEG_HOME/mlflow.db``.
        run_ids: copy these runs instead of the fallen-back ones.

    Raises:
        SyncError: a store cannot be opened, or an asked-for run does not exist.
    """
    source_uri = source_uri or store.local_store_uri()
    if source_uri == target_uri:
        raise SyncError(f"source and target are the same store ({target_uri}); pass --to SERVER_URI")
    clients = {}
    for role, uri in (("source", source_uri), ("target", target_uri)):
        if store.is_remote(uri) and not store.server_reachable(uri, 5.0):
            raise SyncError(f"the {role} {uri} cannot be reached; start it, or try again later")
        if store.sqlite_path(uri) is not None and not store.sqlite_path(uri).is_file():
            raise SyncError(f"the {role} store {store.sqlite_path(uri)} does not exist; pass --from/--to")
        try:
            clients[role] = store.open_client(uri)
        except store.StoreUnusable as error:
            raise SyncError(f"the {role} store {uri} cannot be opened ({error})") from None
    return [
        copy_run(clients["source"], clients["target"], run, target_uri, source_uri)
        for run in pending_runs(clients["source"], target_uri, run_ids)
    ]


def describe(copied: list[Copied], target_uri: str) -> str:
    if not copied:
        return f"nothing to copy: no run in the local store fell back from {target_uri} without being synced"
    lines = [f"copied {len(copied)} run(s) to {target_uri}:"]
    lines += [f"  {c.experiment} / {c.run_name}: {c.source_run_id} -> {c.target_run_id}" for c in copied]
    return "\n".join(lines)
