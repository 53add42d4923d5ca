"""``medseg predict``: segment images with a shared bundle (checked first; see ``medseg check-bundle``)."""

from __future__ import annotations

import argparse
import sys
import time

from medseg.commands.limits import add_limit_arguments, limits_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle folder or .zip made by 'medseg package'")
    parser.add_argument("--input", required=True, help="PNG/JPG image, NIfTI file, DICOM series folder, or a folder")
    parser.add_argument("--output", required=True, help="new or empty folder, outside the input folder")
    parser.add_argument("--overlay", action="store_true", help="also write an overlay PNG per image")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="run the bundle's own MONAI configs (Python: only for a sender you trust) instead of its manifest",
    )
    parser.add_argument("--schema", default=None, help="metadata schema (default: the repository's or the bundle's)")
    parser.add_argument("--require_signed", action="store_true", help="refuse a package no trusted key signed")
    parser.add_argument("--trusted_keys", default=None, help="folder of the senders' .pub keys (medseg keys new)")
    add_limit_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from medseg.sharing.errors import SharingError
    from medseg.sharing.predict import FINDINGS_NAME, SKIPPED_NAME, predict

    started = time.perf_counter()
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        result = predict(
            args.bundle,
            args.input,
            args.output,
            overlay=args.overlay,
            device=device,
            trust=args.trust,
            schema=args.schema,
            require_signed=args.require_signed,
            trusted_keys=args.trusted_keys,
            limits=limits_of(args),
        )
    except SharingError as exc:
        print(f"medseg predict: {exc}", file=sys.stderr)
        return 2
    inputs = len({row["input"] for row in result.rows})
    print(
        f"segmented {inputs} input(s) in {time.perf_counter() - started:.1f}s; "
        f"wrote masks and {result.output / FINDINGS_NAME}"
    )
    if result.skipped:
        print(f"skipped {len(result.skipped)} input(s), listed in {result.output / SKIPPED_NAME}:", file=sys.stderr)
        for _, problem in result.skipped:
            print(f"  {problem}", file=sys.stderr)
    return 0
