"""``medseg train``: train a bundle on a data_prep folder (:func:`medseg.train`).

The same run as ``python -m monai.bundle run --config_file bundles/NAME/configs/train.json --dataset_dir DIR``, with
every override id checked against the bundle first and the closing summary printed.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle name (see: medseg bundles) or folder")
    parser.add_argument("--dataset_dir", required=True, help="data_prep output folder (holds datalist.json)")
    parser.add_argument("--max_epochs", type=int, help="epochs (default: the bundle's)")
    parser.add_argument("--output_dir", help="run folder (default: medseg_work/<bundle>/<run name>)")
    parser.add_argument(
        "--strategy", action="append", default=[], metavar="NAME",
        help="override file from bundles/strategies/ (resume, onecycle, ...) or a path; repeatable",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
        help="config override, e.g. --set batch_size=8 --set optimizer#lr=1e-4; repeatable",
    )


def run(args: argparse.Namespace) -> int:
    from medseg.api import train
    from medseg.bundle.overrides import check_positive
    from medseg.strategies.launch import parse_overrides

    if args.max_epochs is not None:
        check_positive("--max_epochs", args.max_epochs)
    result = train(
        args.bundle,
        args.dataset_dir,
        max_epochs=args.max_epochs,
        output_dir=args.output_dir,
        strategies=args.strategy,
        overrides=parse_overrides(args.overrides),
    )
    print(f"run folder: {result['output_dir']}")
    return 0
