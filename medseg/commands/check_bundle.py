"""``medseg check-bundle``: verify a package's manifest, file hashes and signature; list what its MONAI configs run."""

from __future__ import annotations

import argparse
import sys

from medseg.commands.limits import add_limit_arguments, limits_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle folder or .zip")
    parser.add_argument("--schema", default=None, help="metadata schema (default: the repository's or the bundle's)")
    parser.add_argument("--quiet", action="store_true", help="list only flagged entries")
    parser.add_argument("--trusted_keys", default=None, help="folder of the senders' .pub keys to verify the signature")
    parser.add_argument("--require_signed", action="store_true", help="fail unless a trusted key signed the package")
    add_limit_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Print the report; exit status 0 when the bundle passes, 2 when it fails or cannot be read (bad input)."""
    from medseg.sharing.archive import open_bundle
    from medseg.sharing.check import check_bundle
    from medseg.sharing.errors import SharingError

    try:
        with open_bundle(args.bundle, limits_of(args)) as folder:
            report = check_bundle(
                folder, schema=args.schema, trusted_keys=args.trusted_keys, require_signed=args.require_signed
            )
            print(report.format(verbose=not args.quiet))
    except SharingError as exc:
        print(f"medseg check-bundle: {exc}", file=sys.stderr)
        return 2
    return 0 if report.passed else 2
