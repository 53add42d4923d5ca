"""The ``medseg`` command line.

Each subcommand lives in ``medseg/commands/<name>.py`` with ``add_arguments(parser)`` and ``run(args) -> int``;
it is imported only when called, so ``medseg --help`` stays fast and a command's heavy imports (torch,
MLflow) are paid only by that command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bundles": ("medseg.commands.bundles", "list the bundles medseg finds (with their purpose), or export one to edit"),
    "demo": ("medseg.commands.demo", "generate phantoms, convert them, train and predict: the whole path, on CPU"),
    "plan": ("medseg.commands.plan", "auto-configure a bundle for a dataset and a time budget: writes plans.json"),
    "evaluate": ("medseg.commands.evaluate", "score predicted masks against ground truth and write a report"),
    "compare": ("medseg.commands.compare", "set MLflow runs side by side: table of params and metrics, curves"),
    "sync": ("medseg.commands.sync", "copy runs kept locally while the MLflow server was away to that server"),
    "check-bundle": ("medseg.commands.check_bundle", "list what a bundle would import and run; verify its files"),
    "predict": ("medseg.commands.predict", "segment PNG/JPG, NIfTI or DICOM images with a checked bundle"),
    "package": ("medseg.commands.package", "package a trained bundle (folder + .zip) with a model card"),
    "lr-find": ("medseg.commands.lr_find", "learning-rate range test: plot, suggested lr, logged to MLflow"),
    "progressive": ("medseg.commands.progressive", "train at growing sizes, each from the last stage's best"),
    "kfold": ("medseg.commands.kfold", "k-fold training, then best single model vs mean ensemble on the test split"),
    "sweep": ("medseg.commands.sweep", "grid of training runs as child MLflow runs, then the compare table"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    body = "\n".join(lines)
    return f"usage: medseg COMMAND [options]\n\ncommands:\n{body}\n\n'medseg COMMAND --help' for options."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from medseg import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"medseg: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"medseg {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
