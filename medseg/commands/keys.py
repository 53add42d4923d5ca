"""``medseg keys``: make an Ed25519 key pair to sign shared models with (``medseg package --sign``)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    new = sub.add_parser("new", help="write NAME.key (private, keep it) and NAME.pub (give it to your colleagues)")
    new.add_argument("--out", required=True, help="folder to write the key pair into")
    new.add_argument("--name", default="medseg", help="file name of the pair (default: medseg)")


def run(args: argparse.Namespace) -> int:
    from medseg.sharing.errors import SharingError
    from medseg.sharing.signing import new_keys

    try:
        pair = new_keys(args.out, args.name)
    except SharingError as exc:
        print(f"medseg keys: {exc}", file=sys.stderr)
        return 2
    print(f"private key: {pair.private} (keep it secret; sign with: medseg package ... --sign {pair.private})")
    print(f"public key:  {pair.public} (give it to those who run your models: --trusted_keys FOLDER_WITH_IT)")
    print(f"key id: {pair.key_id}")
    return 0
