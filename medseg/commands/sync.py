"""``medseg sync``: copy runs that went to the local store while a tracking server was away to that server.

``medseg sync --to http://mlflow-host:5000`` copies every local run tagged ``medseg.tracking_fallback_from`` with
that server and not synced yet (see :mod:`medseg.tracking.sync`); ``--runs ID...`` copies given runs instead.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--to", dest="target", help="the server to copy to (default: MLFLOW_TRACKING_URI)", metavar="URI"
    )
    parser.add_argument("--from", dest="source", help="the local store (default: ~/.medseg/mlflow.db)", metavar="URI")
    parser.add_argument("--runs", nargs="+", metavar="ID", help="copy these runs (default: the fallen-back ones)")


def run(args: argparse.Namespace) -> int:
    from medseg.tracking.sync import SyncError, describe, sync_runs

    target = args.target or os.environ.get("MLFLOW_TRACKING_URI")
    if not target:
        print("medseg sync: no server given; pass --to http://HOST:PORT (or set MLFLOW_TRACKING_URI)", file=sys.stderr)
        return 1
    try:
        copied = sync_runs(target, args.source, args.runs)
    except SyncError as error:
        print(f"medseg sync: {error}", file=sys.stderr)
        return 1
    print(describe(copied, target))
    return 0
