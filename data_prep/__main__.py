"""``python -m data_prep``: phantom datasets and converters from real dataset layouts to MONAI datalists.

Examples:
    python -m data_prep phantom isic --out data/isic_raw --n 40
    python -m data_prep isic --src data/isic_raw --out data/isic --max_size 512
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from data_prep.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, DataPrepError

# source name on the command line -> converter module
CONVERTERS = {
    "isic": "data_prep.isic",
    "ham10000": "data_prep.ham10000",
    "acdc": "data_prep.acdc",
    "cardiac-png": "data_prep.cardiac_png",
    "sunnybrook": "data_prep.sunnybrook",
}
# phantom kind -> generator module (each defines ``generate(out, n, seed)``)
PHANTOMS = {
    "isic": "data_prep.phantoms.isic",
    "ham10000": "data_prep.phantoms.ham10000",
    "acdc": "data_prep.phantoms.acdc",
    "cardiac-png": "data_prep.phantoms.cardiac_png",
    "sunnybrook": "data_prep.phantoms.sunnybrook",
}
DEFAULT_PHANTOM_N = {"isic": 40, "ham10000": 56, "acdc": 8, "cardiac-png": 60, "sunnybrook": 3}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the option and the fix) with exit code 2, not the usage block."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from medseg.cli import HelpFormatter  # defaults shown in --help, as in every medseg command

    parser = OneLineParser(prog="python -m data_prep", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    ph = sub.add_parser("phantom", help="write a synthetic dataset in a real source's on-disk layout",
                        formatter_class=HelpFormatter)
    ph.add_argument("kind", choices=sorted(PHANTOMS))
    ph.add_argument("--out", required=True, help="folder to create")
    ph.add_argument("--n", type=int, default=None, help="number of images (patients for acdc and sunnybrook)")
    ph.add_argument("--seed", type=int, default=0, help="random seed")

    for source, module_name in CONVERTERS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(source, help=module.DESCRIPTION.split(".")[0], formatter_class=HelpFormatter)
        p.add_argument("--src", required=True, help="the dataset's root folder (never modified)")
        p.add_argument("--out", required=True, help="output folder for datalist.json, stats.json and derived files")
        p.add_argument("--folds", type=int, default=None,
                       help="cross-validation folds in the training split, 2..number of training groups (default 3, "
                            "lowered with a warning when there are fewer groups)")
        p.add_argument("--val_ratio", type=float, default=0.2, help="validation share when there is no official one")
        p.add_argument("--test_ratio", type=float, default=0.1, help="testing share when there is no official one")
        p.add_argument("--seed", type=int, default=0, help="seed of the splits")
        p.add_argument("--max_size", type=int, default=None, help="shrink images whose long side is larger (px)")
        p.add_argument("--workers", type=int, default=1, help="conversion processes")
        p.add_argument("--skip_bad", action="store_true", help="leave bad cases out and list them in bad_cases.json")
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
        p.set_defaults(module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code: 0 done, 2 bad input, 1 failure, 130 interrupted (Ctrl-C).

    Every error is one line on stderr naming the file or option and the fix; ``DATA_PREP_DEBUG=1`` adds the
    traceback of an unexpected failure.
    """
    try:
        from medseg.cli import normalize_flags  # one flag spelling in every command: --max_size, alias --max_size

        parser = build_parser()
        args = parser.parse_args(normalize_flags(parser, list(sys.argv[1:] if argv is None else argv)))
        if args.command == "phantom":
            from pathlib import Path

            if args.n is not None and args.n < 1:
                raise DataPrepError(None, f"--n {args.n}: must be at least 1", "pass a positive --n")
            if args.seed < 0:
                raise DataPrepError(None, f"--seed {args.seed}: must be 0 or more", "pass a valid --seed")
            module = importlib.import_module(PHANTOMS[args.kind])
            n = args.n if args.n is not None else DEFAULT_PHANTOM_N[args.kind]
            try:
                module.generate(Path(args.out), n=n, seed=args.seed)
            except OSError as exc:
                from data_prep.outdir import output_error

                raise output_error(exc, Path(args.out)) from exc
            print(f"phantom {args.kind}: {n} written to {args.out}", file=sys.stderr)
        else:
            from data_prep.datalist import convert

            convert(args.module, args)
    except DataPrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: --out is left as it was", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or an unforeseen failure: still one line, the traceback on request
        if os.environ.get("DATA_PREP_DEBUG"):
            raise
        print(f"error: data_prep failed ({type(exc).__name__}: {exc}); rerun with DATA_PREP_DEBUG=1 for the "
              "traceback and report it", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
