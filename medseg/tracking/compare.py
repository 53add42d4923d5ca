"""Runs side by side, read at a glance: what ``medseg compare`` prints and draws.

Only training runs by default (evaluation runs and the parents of sweeps and k-fold are left out unless asked
for); only the params that differ between the runs; each run labelled by those params; one line per run, at most
:data:`MAX_WIDTH` characters wide. The figure overlays the runs' curves with the legend outside the axes. For
anything more (parallel coordinates, scatter of params against metrics), MLflow's own compare view is better:
the printed ``mlflow ui`` line opens it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.tracking import store

TRAIN_LOSS = "train/loss"
MAX_WIDTH = 120
MAX_LABEL = 48
# params every run has but that never say how runs differ
NOISE_PARAMS = {"run_kind", "network.parameters"}


class CompareError(Exception):
    """Something the user asked for is not in the store; the message lists what is."""


def fetch_runs(client: Any, experiment: str | None, run_ids: list[str] | None, include_all: bool) -> tuple[str, list]:
    """The runs to compare and a description of where they came from."""
    from mlflow.exceptions import MlflowException

    if run_ids:
        runs, missing = [], []
        for run_id in run_ids:
            try:
                runs.append(client.get_run(run_id))
            except MlflowException:
                missing.append(run_id)
        if missing:
            raise CompareError(
                f"unknown run id(s): {', '.join(missing)}; list runs with 'medseg compare --experiment NAME'"
            )
        return f"{len(runs)} given runs", runs
    experiments = client.search_experiments()
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = ", ".join(sorted(e.name for e in experiments)) or "none"
            raise CompareError(f"no experiment named {experiment!r}; experiments in this store: {names}")
    else:
        latest = client.search_runs([e.experiment_id for e in experiments], max_results=1, order_by=["start_time DESC"])
        if not latest:
            raise CompareError("this store has no runs yet; train a bundle first (python -m monai.bundle run ...)")
        found = client.get_experiment(latest[0].info.experiment_id)
    runs = client.search_runs([found.experiment_id], order_by=["start_time ASC"], max_results=1000)
    if not runs:
        raise CompareError(f"experiment {found.name!r} has no runs yet; train a bundle with it first")
    if not include_all:
        trained = [r for r in runs if r.data.tags.get("medseg.run_kind") == "train"]
        if not trained:
            raise CompareError(
                f"experiment {found.name!r} has no training runs ({len(runs)} other runs); pass --all to compare them"
            )
        runs = trained
    return f"experiment {found.name!r}", runs


def choose_metric(runs: list, metric: str | None) -> str:
    available = sorted({key for run in runs for key in run.data.metrics if not key.startswith("system/")})
    if metric is None:
        tagged = [run.data.tags.get("medseg.key_metric") for run in runs]
        metric = next((m for m in tagged if m), None) or (TRAIN_LOSS if TRAIN_LOSS in available else None)
        if metric is None:
            raise CompareError(f"the runs have no metrics to compare; logged: {', '.join(available) or 'none'}")
    if metric not in available:
        raise CompareError(f"no run has a metric {metric!r}; choose --metric from: {', '.join(available) or 'none'}")
    return metric


def differing_params(runs: list) -> list[str]:
    """Params with at least two different values among the runs that have them; of params that hold the same
    values in every run (``learning_rate`` and ``optimizer.lr``), the shortest name stands for them."""
    keys = sorted({key for run in runs for key in run.data.params} - NOISE_PARAMS)
    columns: dict[tuple, str] = {}
    for key in keys:
        values = tuple(run.data.params.get(key) for run in runs)
        if len({v for v in values if v is not None}) > 1:
            same = tuple(_number(v) for v in values)
            if same not in columns or len(key) < len(columns[same]):
                columns[same] = key
    return sorted(columns.values())


def _number(value: str | None) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def run_label(run: Any, keys: list[str]) -> str:
    """``lr=0.01 loss=DiceLoss``: the run's values of the differing params (short names), or its name."""
    if not keys:
        return run.info.run_name or run.info.run_id[:8]
    text = " ".join(f"{k.rsplit('.', 1)[-1]}={run.data.params.get(k, '-')}" for k in keys)
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 3] + "..."


def _best(history: list, lower_is_better: bool) -> tuple[float, int] | None:
    if not history:
        return None
    point = min(history, key=lambda m: m.value) if lower_is_better else max(history, key=lambda m: m.value)
    return point.value, point.step


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line[:MAX_WIDTH] for line in lines)


def default_out(tracking_uri: str) -> Path:
    """Beside a SQLite store (``<store folder>/compare``); the current folder for a server."""
    path = store.sqlite_path(tracking_uri)
    return path.parent / "compare" if path is not None else Path(".")


def compare(
    tracking_uri: str | None = None,
    experiment: str | None = None,
    run_ids: list[str] | None = None,
    metric: str | None = None,
    out: str | Path | None = None,
    order: str = "auto",
    include_all: bool = False,
) -> tuple[str, Path]:
    """Build the comparison table and the learning-curve figure.

    Args:
        tracking_uri: store or server; None resolves the default.
        experiment: experiment name; None takes the experiment of the most recent run.
        run_ids: compare these runs instead of an experiment's.
        metric: the metric to sort by and plot; None takes the ``medseg.key_metric`` tag.
        out: folder for the PNG; None puts it beside the store (:func:`default_out`).
        order: ``max``, ``min`` or ``auto`` (min when the metric name contains ``loss``).
        include_all: also evaluation runs and parent runs.

    Returns:
        the printed text and the PNG path.

    Raises:
        CompareError: unknown experiment or run ids, no runs, or a metric no run has.
    """
    from medseg.tracking import plots

    uri = store.resolve_tracking_uri(tracking_uri)
    try:
        client = store.open_client(uri)
    except store.StoreUnusable as error:
        raise CompareError(f"the store {uri} cannot be read ({error}); pass --tracking-uri URI") from None
    source, runs = fetch_runs(client, experiment, run_ids, include_all)
    metric = choose_metric(runs, metric)
    lower_is_better = order == "min" or (order == "auto" and "loss" in metric.lower())

    histories = {run.info.run_id: client.get_metric_history(run.info.run_id, metric) for run in runs}
    scored = [(run, _best(histories[run.info.run_id], lower_is_better)) for run in runs]
    missing = [run for run, best in scored if best is None]
    scored = [item for item in scored if item[1] is not None]
    scored.sort(key=lambda item: item[1][0], reverse=not lower_is_better)

    keys = differing_params([run for run, _ in scored])
    labels = {run.info.run_id: run_label(run, keys) for run, _ in scored}
    rows = [["#", "run id", "status", f"best {metric}", "epoch", "differs by" if keys else "run"]]
    for rank, (run, (value, step)) in enumerate(scored, start=1):
        status = run.info.status[:8]
        rows.append([str(rank), run.info.run_id[:8], status, f"{value:.4f}", str(step), labels[run.info.run_id]])
    better = "lower" if lower_is_better else "higher"
    lines = [f"{len(scored)} runs of {source}, sorted by {metric} ({better} is better)"]
    lines.append(f"params that differ: {', '.join(keys)}" if keys else "(no params differ between these runs)")
    lines.append(_table(rows))
    if missing:
        lines.append(f"without {metric}: " + ", ".join(f"{r.info.run_name} ({r.info.run_id[:8]})" for r in missing))

    curves = {}
    for run, _ in scored:
        label = f"{run.info.run_id[:6]} {labels[run.info.run_id]}"
        metrics = {metric: [(m.step, m.value) for m in histories[run.info.run_id]]}
        if metric != TRAIN_LOSS:
            metrics[TRAIN_LOSS] = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, TRAIN_LOSS)]
        curves[label] = metrics
    panels = [metric] + (
        [TRAIN_LOSS] if metric != TRAIN_LOSS and any(c.get(TRAIN_LOSS) for c in curves.values()) else []
    )
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in metric)
    folder = Path(out) if out is not None else default_out(uri)
    png = plots.compare_curves_png(curves, panels, folder / f"compare_{safe}.png")
    lines.append(f"learning curves: {png}")
    lines.append(f"MLflow's compare view: mlflow ui --backend-store-uri {uri}" if not store.is_remote(uri) else uri)
    return "\n".join(lines), png
