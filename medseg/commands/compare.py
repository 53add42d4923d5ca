"""``medseg compare``: MLflow training runs side by side (see :mod:`medseg.tracking.compare`).

Prints the runs sorted by a metric, each labelled by the params that differ between them, and writes a PNG of their
learning curves (legend outside the plot) beside the store, or where ``--out`` says.
"""

from __future__ import annotations

import argparse
import sys

from medseg.tracking.compare import CompareError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", help="experiment name (default: the one with the most recent run)")
    parser.add_argument(
        "--runs", nargs="+", metavar="ID", help="run ids to compare (default: the experiment's training runs)"
    )
    parser.add_argument("--metric", help="metric to sort and plot by (default: the runs' medseg.key_metric tag)")
    parser.add_argument("--out", help="folder for compare_<metric>.png (default: beside the store, in compare/)")
    parser.add_argument(
        "--order", choices=("auto", "max", "min"), default="auto", help="best is max or min (auto: min for *loss*)"
    )
    parser.add_argument("--all", action="store_true", help="include evaluation runs and sweep/k-fold parent runs")
    parser.add_argument(
        "--tracking_uri", help="store or server (default: MLFLOW_TRACKING_URI, else ~/.medseg/mlflow.db)"
    )


def run(args: argparse.Namespace) -> int:
    from medseg.tracking.compare import compare

    try:
        text, _ = compare(
            args.tracking_uri,
            args.experiment,
            args.runs,
            args.metric,
            args.out,
            args.order,
            include_all=getattr(args, "all", False),
        )
    except (CompareError, ValueError) as error:
        print(f"medseg compare: {error}", file=sys.stderr)
        return 1
    print(text)
    return 0
