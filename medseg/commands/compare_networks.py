"""``medseg compare-networks``: registered networks side by side under one bundle's recipe, cross-validated.

Every network trains on every fold for the same time budget with the same seed, data and inference; the held-out
fold scores it. Writes ``comparison.md``/``.csv``/``.json``/``.png`` to ``--out`` and logs them, with one nested
MLflow child run per network and fold, to one parent run (see :mod:`medseg.strategies.network_comparison`).

Example::

    python -m data_prep cardiac-png --src cardiac_png_sample --out data/cardiac --folds 5 --val_ratio 0 --test_ratio 0
    medseg compare-networks --bundle cardiac_unet --dataset_dir data/cardiac \\
        --networks unet unet3plus deeplabv3 coursework_unet --time_budget 3m --seed 0
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medseg.strategies.launch import add_common_arguments

    add_common_arguments(parser)
    parser.add_argument(
        "--networks", nargs="+", required=True, metavar="NAME",
        help="registered networks to compare, e.g. unet unet3plus deeplabv3 coursework_unet (an unknown name lists "
        "them all; docs/networks.md)",
    )
    parser.add_argument("--time_budget", default="3m", help="training wall time per network and fold (90s, 3m, 1h)")
    parser.add_argument(
        "--folds", type=int, nargs="+",
        help="folds to score (default: every fold; the next fold validates, the others train; at least 3 folds)",
    )


def run(args: argparse.Namespace) -> int:
    from medseg.bundle.errors import BundleInputError
    from medseg.strategies.launch import CommandSetup
    from medseg.strategies.network_comparison import check_networks, compare_networks

    try:
        check_networks(args.networks)
        setup = CommandSetup(args, "compare-networks")
        result = compare_networks(setup, args.networks, args.time_budget, args.folds)
    except BundleInputError as error:  # StrategyError, or a bad datalist met while running the bundle
        print(f"medseg compare-networks: {error}", file=sys.stderr)
        return 2
    print((setup.out / "comparison.md").read_text())
    print("\n".join(f"wrote {path}" for path in result.files))
    return 0
