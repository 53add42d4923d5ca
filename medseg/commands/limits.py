"""Command-line options for what a received zip may hold (shared by ``check-bundle`` and ``predict``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max_total_mb", type=float, default=None, help="refuse a zip extracting to more (2048)")
    parser.add_argument("--max_file_mb", type=float, default=None, help="refuse a zip entry larger than this (256)")
    parser.add_argument("--max_files", type=int, default=None, help="refuse a zip with more files (512)")


def limits_of(args: argparse.Namespace) -> Any:
    from medseg.sharing.archive import ExtractionLimits

    return ExtractionLimits.from_mb(args.max_total_mb, args.max_file_mb, args.max_files)
