"""``medseg compare``: MLflow runs side by side.

Prints the runs sorted by a metric, with the params that differ between them as columns, and writes a PNG
overlaying their learning curves. Reads from any tracking URI (see ``medseg.tracking.resolve_tracking_uri``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TRAIN_LOSS = "train_loss"


class CompareError(Exception):
    """Something the user asked for is not in the store; the message lists what is."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", help="experiment name (default: the one with the most recent run)")
    parser.add_argument(
        "--runs", nargs="+", metavar="ID", help="run ids to compare (default: all runs of the experiment)"
    )
    parser.add_argument("--metric", help="metric to sort and plot by (default: the runs' medseg.key_metric tag)")
    parser.add_argument("--out", default=".", help="folder for compare_<metric>.png (default: .)")
    parser.add_argument(
        "--order", choices=("auto", "max", "min"), default="auto", help="best is max or min (auto: min for *loss*)"
    )
    parser.add_argument(
        "--tracking_uri", help="store or server (default: MLFLOW_TRACKING_URI, else ~/.medseg/mlflow.db)"
    )


def _fetch_runs(client, experiment: str | None, run_ids: list[str] | None) -> tuple[str, list]:
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
    return f"experiment {found.name!r}", runs


def _choose_metric(runs: list, metric: str | None) -> str:
    available = sorted({key for run in runs for key in run.data.metrics})
    if metric is None:
        tagged = [run.data.tags.get("medseg.key_metric") for run in runs]
        metric = next((m for m in tagged if m), None) or (TRAIN_LOSS if TRAIN_LOSS in available else None)
        if metric is None:
            raise CompareError(f"the runs have no metrics to compare; logged: {', '.join(available) or 'none'}")
    if metric not in available:
        raise CompareError(f"no run has a metric {metric!r}; choose --metric from: {', '.join(available) or 'none'}")
    return metric


def _best(history: list, lower_is_better: bool) -> tuple[float, int] | None:
    if not history:
        return None
    point = min(history, key=lambda m: m.value) if lower_is_better else max(history, key=lambda m: m.value)
    return point.value, point.step


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def compare(
    tracking_uri: str | None = None,
    experiment: str | None = None,
    run_ids: list[str] | None = None,
    metric: str | None = None,
    out: str | Path = ".",
    order: str = "auto",
) -> tuple[str, Path]:
    """Build the comparison table and the learning-curve figure.

    Args:
        tracking_uri: store or server; None resolves the default.
        experiment: experiment name; None takes the experiment of the most recent run.
        run_ids: compare these runs instead of an experiment's.
        metric: the metric to sort by and plot; None takes the ``medseg.key_metric`` tag.
        out: folder for the PNG.
        order: ``max``, ``min`` or ``auto`` (min when the metric name contains ``loss``).

    Returns:
        the printed text and the PNG path.

    Raises:
        CompareError: unknown experiment or run ids, no runs, or a metric no run has.
    """
    import mlflow

    from medseg.tracking import plots, store

    store.quiet_mlflow()
    uri = store.resolve_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    source, runs = _fetch_runs(client, experiment, run_ids)
    metric = _choose_metric(runs, metric)
    lower_is_better = order == "min" or (order == "auto" and "loss" in metric.lower())

    histories = {run.info.run_id: client.get_metric_history(run.info.run_id, metric) for run in runs}
    scored = [(run, _best(histories[run.info.run_id], lower_is_better)) for run in runs]
    missing = [run for run, best in scored if best is None]
    scored = [item for item in scored if item[1] is not None]
    scored.sort(key=lambda item: item[1][0], reverse=not lower_is_better)

    keys = sorted({key for run, _ in scored for key in run.data.params})
    differing = [k for k in keys if len({run.data.params.get(k, "-") for run, _ in scored}) > 1]
    rows = [["run", "run id", "status", f"best {metric}", "epoch", *differing]]
    for run, (value, step) in scored:
        params = run.data.params
        cells = [run.info.run_name or "-", run.info.run_id[:8], run.info.status, f"{value:.4f}", str(step)]
        rows.append(cells + [params.get(k, "-") for k in differing])
    better = "lower" if lower_is_better else "higher"
    lines = [f"{len(scored)} runs of {source} in {uri}, sorted by {metric} ({better} is better)"]
    if not differing:
        lines.append("(no params differ between these runs)")
    lines.append(_table(rows))
    if missing:
        lines.append(f"without {metric}: " + ", ".join(f"{r.info.run_name} ({r.info.run_id[:8]})" for r in missing))

    curves = {}
    for run, _ in scored:
        label = f"{run.info.run_name or run.info.run_id[:8]}"
        if differing:
            label += " (" + ", ".join(f"{k}={run.data.params.get(k, '-')}" for k in differing[:3]) + ")"
        metrics = {metric: [(m.step, m.value) for m in histories[run.info.run_id]]}
        if metric != TRAIN_LOSS:
            metrics[TRAIN_LOSS] = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, TRAIN_LOSS)]
        curves[label] = metrics
    panels = [metric] + (
        [TRAIN_LOSS] if metric != TRAIN_LOSS and any(c.get(TRAIN_LOSS) for c in curves.values()) else []
    )
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in metric)
    png = plots.compare_curves_png(curves, panels, Path(out) / f"compare_{safe}.png")
    lines.append(f"learning curves: {png}")
    return "\n".join(lines), png


def run(args: argparse.Namespace) -> int:
    try:
        text, _ = compare(args.tracking_uri, args.experiment, args.runs, args.metric, args.out, args.order)
    except (CompareError, ValueError) as error:
        print(f"medseg compare: {error}", file=sys.stderr)
        return 1
    print(text)
    return 0
