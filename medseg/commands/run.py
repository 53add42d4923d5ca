"""``medseg run``: ``python -m monai.bundle run`` with medseg's checks, taking the same arguments.

``medseg run --config_file "['bundles/X/configs/train.json','bundles/X/configs/evaluate.json']" --dataset_dir D
--max_epochs 5``: every ``--id value`` is a config override, as for MONAI. Before anything runs, each config file
must exist and parse, the first must be a whole config (not ``evaluate.json`` alone) and every override id must be
one the configs define; any problem is one line naming the file or id and the fix, with exit status 2.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config_file", required=True, help="config file, or \"['train.json','override.json']\"")
    parser.add_argument("--meta_file", help="metadata.json (default: beside the first config)")
    parser.add_argument("--logging_file", help="logging.conf (default: beside the first config)")
    parser.epilog = "Any other --ID VALUE is a config override, as for python -m monai.bundle run."


# the command line keeps options it does not define, as config overrides (``args.overrides``)
ACCEPTS_OVERRIDES = True


def parse_pairs(tokens: list[str]) -> dict:
    """``["--max_epochs", "5", "--net#ch=[8,16]"]`` -> ``{"max_epochs": 5, "net#ch": [8, 16]}``, values parsed as
    MONAI's command line parses them (JSON or Python literals, else text)."""
    from medseg.bundle.errors import BundleInputError
    from medseg.strategies.launch import parse_value

    pairs: dict = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--") or len(token) < 3:
            raise BundleInputError(f"{token!r}: expected --ID VALUE (a config override such as --max_epochs 5)")
        key, sep, value = token[2:].partition("=")
        if not sep:
            if index + 1 >= len(tokens) or tokens[index + 1].startswith("--"):
                raise BundleInputError(f"--{key}: no value given; write --{key} VALUE")
            value, index = tokens[index + 1], index + 1
        pairs[key] = parse_value(value)
        index += 1
    return pairs


def run(args: argparse.Namespace) -> int:
    from medseg.api import run_configs
    from medseg.bundle.overrides import check_config_files

    files = check_config_files(args.config_file)
    logging_file = args.logging_file if args.logging_file is None or args.logging_file.lower() != "false" else False
    run_configs(files, meta_file=args.meta_file, logging_file=logging_file, **parse_pairs(args.overrides))
    return 0
