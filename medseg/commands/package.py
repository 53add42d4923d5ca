"""``medseg package``: a self-contained, checked bundle (folder and .zip) with a model card, from a trained run."""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="source bundle folder, e.g. bundles/isic_unet")
    parser.add_argument("--run", required=True, help="MLflow run id (its best checkpoint is used) or a checkpoint file")
    parser.add_argument("--out", required=True, help="folder to write <bundle>_v<version>/ and its .zip into")
    parser.add_argument("--version", default=None, help="X.Y.Z (default: the bundle's version, patch bumped)")
    parser.add_argument("--schema", default=None, help="metadata schema (default: bundles/schema/meta_schema.json)")
    parser.add_argument("--tracking_uri", default=None, help="MLflow store holding the run (default as for training)")


def run(args: argparse.Namespace) -> int:
    from medseg.sharing.errors import SharingError
    from medseg.sharing.package import package

    started = time.perf_counter()
    try:
        result = package(
            args.bundle, args.run, args.out, version=args.version, schema=args.schema, tracking_uri=args.tracking_uri
        )
    except SharingError as exc:
        print(f"medseg package: {exc}", file=sys.stderr)
        return 1
    print(
        f"packaged version {result.version} in {time.perf_counter() - started:.1f}s: {result.folder} and {result.zip}"
    )
    print(f"check it with: medseg check-bundle {result.zip}")
    return 0
