"""What ``medseg package --run`` points at: a checkpoint file, or an MLflow run whose best checkpoint it logged.

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
KFOLD_SUMMARY = "kfold_summary.json"


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
        datasets: the datasets MLflow recorded as the run's inputs.
        folds: ``(name, checkpoint)`` per fold of a k-fold run (empty otherwise).
        fold_scores: each fold's validation score.
        postprocessing: a k-fold run's ensemble post-processing decision (chosen on the out-of-fold predictions),
            or None; a single run's decision lies beside its checkpoint instead.
        model_uri: the registered model the run was reached by (``models:/NAME/VERSION``), if any.
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
    datasets: list[dict[str, str]] = field(default_factory=list)
    folds: list[tuple[str, Path]] = field(default_factory=list)
    fold_scores: dict[str, float] = field(default_factory=dict)
    postprocessing: Path | None = None
    model_uri: str | None = None

    @property
    def has_run(self) -> bool:
        return self.run_id is not None

    @property
    def is_ensemble(self) -> bool:
        """A k-fold parent run (or ``kfold_summary.json``): one weight file per fold, averaged at prediction."""
        return len(self.folds) > 1


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
        return (not ("best" in name or "key_metric" in name), "final" in name, path)

    return sorted(candidates, key=rank)[0] if candidates else None


def resolve_run(run: str, work_dir: str | Path | None = None, tracking_uri: str | None = None) -> RunInfo:
    """Turn ``--run`` into a checkpoint and the run's record.

    Args:
        run: a checkpoint path, or an MLflow run id.
        work_dir: where to download the run's artifacts (a temporary folder by default; the caller removes it).
        tracking_uri: the MLflow store (default: ``medseg.tracking.resolve_tracking_uri()``).

    Returns:
        the run information.

    Raises:
        SharingError: the path does not exist and no run has that id, or the run logged no checkpoint.
    """
    path = Path(run)
    if path.is_file() and path.name == KFOLD_SUMMARY:
        return _from_kfold_summary(path)
    if path.is_file():
        return RunInfo(checkpoint=path)
    if path.suffix in CHECKPOINT_SUFFIXES or "/" in run:
        raise SharingError(run, "checkpoint not found", "pass an existing checkpoint file or an MLflow run id")
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri is None:
        try:
            from medseg.tracking.store import resolve_tracking_uri

            tracking_uri = resolve_tracking_uri()
        except (ImportError, ValueError):
            tracking_uri = mlflow.get_tracking_uri()
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
    dest = Path(work_dir or tempfile.mkdtemp(prefix="medseg-run-"))
    chosen = _pick_checkpoint(artifacts)
    kfold = None
    if KFOLD_SUMMARY in artifacts:  # a k-fold parent run: its summary names one checkpoint per fold
        kfold = _from_kfold_summary(Path(client.download_artifacts(run, KFOLD_SUMMARY, str(dest))))
    elif chosen is None:
        raise SharingError(
            run,
            f"the MLflow run logged no checkpoint (artifacts: {artifacts[:10]})",
            "pass the checkpoint file with --run instead",
        )
    checkpoint = kfold.checkpoint if kfold else Path(client.download_artifacts(run, chosen, str(dest)))
    if not kfold:  # the post-processing decision logged beside the checkpoint lands beside it again
        from medseg.postprocessing import DECISION_FILE

        for path in artifacts:
            if path.endswith(DECISION_FILE) and Path(path).parent == Path(chosen).parent:
                client.download_artifacts(run, path, str(dest))
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
        datasets=_dataset_inputs(record),
        folds=kfold.folds if kfold else [],
        fold_scores=kfold.fold_scores if kfold else {},
        postprocessing=kfold.postprocessing if kfold else None,
    )


def _dataset_inputs(record) -> list[dict[str, str]]:
    """The datasets MLflow recorded as the run's inputs (name, digest, source), when any."""
    inputs = getattr(getattr(record, "inputs", None), "dataset_inputs", None) or []
    found = []
    for entry in inputs:
        dataset = getattr(entry, "dataset", None)
        if dataset is not None:
            found.append({k: str(getattr(dataset, k, "") or "") for k in ("name", "digest", "source_type", "source")})
    return found


def _from_kfold_summary(path: Path) -> RunInfo:
    """A k-fold run from its ``kfold_summary.json`` (see ``medseg kfold``): fold checkpoints, validation scores and
    the ensemble's post-processing decision (summaries written before it was chosen have none).

    Raises:
        SharingError: not a summary, or a fold checkpoint or decision file that no longer exists.
    """
    import json

    try:
        summary = json.loads(path.read_text())
        checkpoints = {str(k): Path(v) for k, v in summary["checkpoints"].items()}
        decision = Path(summary["postprocessing"]) if summary.get("postprocessing") else None
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise SharingError(path, f"is not a medseg k-fold summary ({exc})", "pass the kfold_summary.json") from exc
    missing = [str(p) for p in [*checkpoints.values(), *([decision] if decision else [])] if not p.is_file()]
    if not checkpoints or missing:
        raise SharingError(
            path, f"names files that do not exist ({missing[:3]})", "package on the machine that trained it"
        )
    scores = {str(k): float(v) for k, v in summary.get("validation", {}).items()}
    best = max(scores, key=scores.get) if scores else sorted(checkpoints)[0]
    return RunInfo(
        checkpoint=checkpoints.get(best, next(iter(checkpoints.values()))),
        folds=sorted(checkpoints.items()),
        fold_scores=scores,
        postprocessing=decision,
        params={"kfold_summary": str(path)},
    )


def state_dict_of(checkpoint: Path) -> dict:
    """The network weights in a checkpoint, loaded with ``weights_only=True``.

    Accepts a bare state dict or a MONAI ``CheckpointSaver`` file (``{"model": ..., "optimizer": ...}``).

    Raises:
        SharingError: the file is not a weights-only checkpoint or holds no network weights.
    """
    import torch

    try:
        data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-weights objects
        raise SharingError(
            checkpoint,
            f"cannot be loaded with weights_only=True ({type(exc).__name__}: {exc})",
            "pass a state dict or a MONAI CheckpointSaver file",
        ) from exc
    if isinstance(data, dict):
        for key in ("model", "network", "net", "state_dict"):
            if isinstance(data.get(key), dict):
                return data[key]
        if data and all(isinstance(v, torch.Tensor) for v in data.values()):
            return data
    raise SharingError(checkpoint, "holds no network state dict", "pass the checkpoint written by training")
