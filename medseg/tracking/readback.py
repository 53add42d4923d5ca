"""Reading a finished run back from MLflow: its best checkpoint and its record (for ``medseg package``).

For a run, the params, the latest value of every metric, the metric histories (for learning curves) and the
logged overlays come with it; for a bare checkpoint they are absent and the model card says so rather than
inventing numbers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from medseg.sharing.errors import SharingError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass
class RunInfo:
    """A checkpoint and, when it came from an MLflow run, that run's record.

    Attributes:
        checkpoint: the local checkpoint file.
        run_id: the MLflow run id, or None for a bare checkpoint.
        run_name: the run's name.
        tracking_uri: where the run was found.
        params: the run's params.
        metrics: the latest value of each metric.
        history: metric name -> [(step, value)], for learning curves.
        tags: the run's tags.
        images: local copies of the run's overlay and learning-curve PNGs.
        model_uri: the model URI the run was reached by (``models:/NAME/VERSION``), if any.
    """

    checkpoint: Path
    run_id: str | None = None
    run_name: str | None = None
    tracking_uri: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    images: list[Path] = field(default_factory=list)
    model_uri: str | None = None

    @property
    def has_run(self) -> bool:
        return self.run_id is not None


def _list_artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    files = []
    for info in client.list_artifacts(run_id, path):
        files += _list_artifacts(client, run_id, info.path) if info.is_dir else [info.path]
    return files


def _pick_checkpoint(paths: list[str]) -> str | None:
    candidates = [p for p in paths if p.lower().endswith(CHECKPOINT_SUFFIXES)]

    def rank(path: str) -> tuple:
        name = path.lower()
        # the best checkpoint first (MONAI's CheckpointSaver names it after the key metric), then the final one
        return (
            not name.startswith("checkpoints/"),
            not ("best" in name or "key_metric" in name or name.endswith("/model.pt")),
            "final" in name or "last" in name,
            path,
        )

    return sorted(candidates, key=rank)[0] if candidates else None


def resolve_run(run: str, work_dir: str | Path | None = None, tracking_uri: str | None = None) -> RunInfo:
    """Turn ``--run`` into a checkpoint and the run's record.

    Args:
        run: a checkpoint path, an MLflow run id, or a model URI (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``).
        work_dir: where to download the run's artifacts (a temporary folder by default; the caller removes it).
        tracking_uri: the MLflow store (default: ``medseg.tracking.resolve_tracking_uri()``).

    Returns:
        the run information.

    Raises:
        SharingError: the path does not exist and no run has that id, or the run logged no checkpoint.
    """
    if run.startswith(("models:/", "runs:/")):
        from medseg.tracking.models import resolve_model_checkpoint

        return resolve_model_checkpoint(run, tracking_uri, work_dir)[1]
    path = Path(run)
    if path.is_file():
        return RunInfo(checkpoint=path)
    if path.suffix in CHECKPOINT_SUFFIXES or "/" in run:
        raise SharingError(run, "checkpoint not found", "pass an existing checkpoint file or an MLflow run id")
    return fetch_run(run, tracking_uri, work_dir)


def fetch_run(run: str, tracking_uri: str | None = None, work_dir: str | Path | None = None) -> RunInfo:
    """An MLflow run's best checkpoint (downloaded), params, metrics, histories, tags and PNGs.

    Raises:
        SharingError: no run has that id, or the run logged no checkpoint.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from medseg.tracking import store

    if tracking_uri is None:
        try:
            tracking_uri = store.resolve_tracking_uri()
        except ValueError:
            tracking_uri = mlflow.get_tracking_uri()
    store.quiet_mlflow()
    store.bound_http_requests()
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        record = client.get_run(run)
    except MlflowException as exc:
        raise SharingError(
            run,
            f"is neither a file nor an MLflow run in {tracking_uri} ({exc.message})",
            "pass a checkpoint path, or set MLFLOW_TRACKING_URI to the store that holds the run",
        ) from exc
    artifacts = _list_artifacts(client, run)
    chosen = _pick_checkpoint(artifacts)
    if chosen is None:
        raise SharingError(
            run,
            f"the MLflow run logged no checkpoint (artifacts: {artifacts[:10]})",
            "pass the checkpoint file with --run instead",
        )
    dest = Path(work_dir or tempfile.mkdtemp(prefix="medseg-run-"))
    checkpoint = Path(client.download_artifacts(run, chosen, str(dest)))
    images = [Path(client.download_artifacts(run, p, str(dest))) for p in artifacts if p.lower().endswith(".png")]
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run, key)] for key in sorted(record.data.metrics)
    }
    return RunInfo(
        checkpoint=checkpoint,
        run_id=run,
        run_name=record.info.run_name,
        tracking_uri=tracking_uri,
        params=dict(record.data.params),
        metrics=dict(record.data.metrics),
        history=history,
        tags={k: v for k, v in record.data.tags.items() if not k.startswith("mlflow.")},
        images=images,
    )
