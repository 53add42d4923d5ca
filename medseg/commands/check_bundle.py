"""``medseg check-bundle``: list what a bundle would import and run, and verify its model files and metadata."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle folder or .zip")
    parser.add_argument("--schema", default=None, help="metadata schema (default: the repository's or the bundle's)")
    parser.add_argument("--quiet", action="store_true", help="list only flagged entries")


def run(args: argparse.Namespace) -> int:
    """Print the report; exit status 0 when the bundle passes, 1 when it fails or cannot be read."""
    from medseg.sharing.archive import open_bundle
    from medseg.sharing.check import check_bundle
    from medseg.sharing.errors import SharingError

    try:
        with open_bundle(args.bundle) as folder:
            report = check_bundle(folder, schema=args.schema)
            print(report.format(verbose=not args.quiet))
    except SharingError as exc:
        print(f"medseg check-bundle: {exc}", file=sys.stderr)
        return 1
    return 0 if report.passed else 1
