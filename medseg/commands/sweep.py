"""``medseg sweep``: a grid of training runs as child runs of one MLflow parent, then the ``medseg compare`` table.

``--grid 'loss=[dicefocal,dice,ce,weighted_ce]' --grid 'lr=[1e-2,1e-3,1e-4]' --grid 'weight_decay=[0,1e-4]'`` runs
every combination (keys and values: :mod:`medseg.strategies.sweep`). Every key and value is checked against the
bundle before the first run. Each grid point trains into ``--out/<index>_<label>``; its child run carries the
point as params ``sweep.<key>`` and tags.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medseg.strategies.launch import add_common_arguments

    add_common_arguments(parser)
    parser.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=[V1,V2,...]",
        help="a swept key and its values, e.g. --grid 'lr=[1e-3,1e-4]'; repeatable (the grid is their product)",
    )
    parser.add_argument("--metric", help="metric of the comparison table (default: the runs' key metric)")


def run(args: argparse.Namespace) -> int:
    from medseg.bundle.errors import BundleInputError
    from medseg.strategies.launch import CommandSetup
    from medseg.strategies.sweep import check_grid, grid_points, parse_grid, point_overrides

    try:
        setup = CommandSetup(args, "sweep")
        grid = parse_grid(args.grid)
        check_grid(grid, setup.parser)
        points = grid_points(grid)
        for point in points:  # build every point's loss now: a bad one fails before the first run
            overrides, strategies = point_overrides(point, setup.parser)
            if "loss" in overrides or strategies:
                _build_loss(setup, overrides, strategies)
        tracked = "MLflowTracking" in json.dumps(setup.parser.get(), default=str)
        if not tracked:
            print(
                f"warning: {setup.bundle} has no MLflow tracking block (docs/tracking.md, 'Wiring a bundle'): "
                "its child runs will hold the grid point only, and no comparison table can be made",
                file=sys.stderr,
            )
        parent_id, child_ids = _sweep(setup, grid, points)
    except BundleInputError as error:  # StrategyError, or a bad datalist met while running the bundle
        print(f"medseg sweep: {error}", file=sys.stderr)
        return 2
    return _compare(setup, parent_id, child_ids, args.metric) if tracked else 0


def _build_loss(setup, overrides: dict, strategies: list[str]) -> None:
    from medseg.strategies import StrategyError

    try:
        setup.config(overrides, strategies).get_parsed_content("loss")
    except StrategyError:
        raise
    except Exception as error:
        cause = error.__cause__ or error
        if isinstance(cause, StrategyError):
            raise cause from None
        raise StrategyError(f"the loss of grid point {overrides.get('loss')} cannot be built: {error}") from None


def _sweep(setup, grid: dict, points: list[dict]) -> tuple[str, list[str]]:
    from medseg.strategies.runs import ParentRun
    from medseg.strategies.sweep import point_label, point_overrides
    from medseg.tracking import run_name

    params = {
        "bundle": setup.name,
        "strategies": ",".join(setup.strategies) or "none",
        **{f"grid.{k}": v for k, v in grid.items()},
        "grid_points": len(points),
    }
    tags = {"medseg.strategy": "sweep", "medseg.bundle": setup.name}
    child_ids = []
    with ParentRun(setup.experiment, run_name(setup.name, "sweep"), setup.tracking_uri, tags, params) as parent:
        for index, point in enumerate(points, start=1):
            label = point_label(point)
            overrides, strategies = point_overrides(point, setup.parser)
            safe = "".join(c if c.isalnum() or c in "=.,-_" else "_" for c in label)
            point_dir = setup.out / f"{index:03d}_{safe}"
            child_name, child_id = parent.child(
                f"{index:03d}",
                {f"medseg.sweep.{k}": v for k, v in point.items()},
                {f"sweep.{k}": v for k, v in point.items()},
            )
            child_ids.append(child_id)
            print(f"grid point {index}/{len(points)}: {label} -> {point_dir}", flush=True)
            setup.run({**overrides, "output_dir": str(point_dir), **parent.tracking_overrides(child_name)}, strategies)
            parent.end_child(child_id)
        print(f"MLflow: parent run {parent.run_name} ({parent.run_id}) in {parent.experiment_name}")
    return parent.run_id, child_ids


def _compare(setup, parent_id: str, child_ids: list[str], metric: str | None) -> int:
    from medseg.commands import compare

    tracking_uri = setup.tracking_uri
    if tracking_uri is None:
        from medseg.tracking import resolve_tracking_uri

        tracking_uri = resolve_tracking_uri()
    args = argparse.Namespace(
        experiment=None, runs=child_ids, metric=metric, out=str(setup.out), order="auto", tracking_uri=tracking_uri
    )
    return compare.run(args)
