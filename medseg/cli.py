"""The ``medseg`` command line (also ``python -m medseg``).

Each subcommand lives in ``medseg/commands/<name>.py`` with ``add_arguments(parser)`` and ``run(args) -> int``;
it is imported only when called, so ``--help`` stays fast and a command's heavy imports (torch, MLflow) are paid
only by that command.

One set of rules for every command:

- flags are spelled with underscores, like MONAI's (``--dataset_dir``, ``--tracking_uri``); the hyphen spelling
  (``--tracking-uri``) is accepted as an alias, and so are ``lr_find``-style command names;
- exit status 0 done, 2 bad input (a bad option, file or config: one line naming it and the fix), 1 a failure,
  130 Ctrl-C (one line; what was written before stays as it was);
- ``--help`` shows every default.
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
    "train": ("medseg.commands.train", "train a bundle on a data_prep folder (checked overrides, closing summary)"),
    "run": ("medseg.commands.run", "python -m monai.bundle run, with medseg's checks: same arguments, one-line errors"),
    "evaluate": ("medseg.commands.evaluate", "score predicted masks against ground truth and write a report"),
    "compare": ("medseg.commands.compare", "set MLflow runs side by side: table of params and metrics, curves"),
    "check-bundle": ("medseg.commands.check_bundle", "verify a package's manifest, hashes, signature; list its code"),
    "predict": ("medseg.commands.predict", "segment PNG/JPG, NIfTI or DICOM images with a checked package"),
    "package": ("medseg.commands.package", "package a trained bundle: data-only manifest, weights, model card"),
    "keys": ("medseg.commands.keys", "make an Ed25519 key pair to sign packages with"),
    "sync": ("medseg.commands.sync", "copy runs kept locally while the MLflow server was away to that server"),
    "lr-find": ("medseg.commands.lr_find", "learning-rate range test: plot, suggested lr, logged to MLflow"),
    "progressive": ("medseg.commands.progressive", "train at growing sizes, each from the last stage's best"),
    "kfold": ("medseg.commands.kfold", "k-fold training, then best single model vs mean ensemble on the test split"),
    "sweep": ("medseg.commands.sweep", "grid of training runs as child MLflow runs, then the compare table"),
    "compare-networks": (
        "medseg.commands.compare_networks",
        "registered networks side by side under one recipe: cross-validated table, plot, nested MLflow runs",
    ),
}
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
ALIAS_NOTE = "Every --name_with_underscores option is also accepted as --name-with-underscores."


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (when it has one worth showing) and keeps descriptions as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" not in text
            and not (default is None or default is False or default == [] or default is argparse.SUPPRESS)
            and action.option_strings
            and action.nargs != 0
        ):
            text += " (default: %(default)s)"
        return text


def canonical_flag(flag: str) -> str:
    """The one spelling of a long flag: ``--tracking-uri`` -> ``--tracking_uri``."""
    return "--" + flag[2:].replace("-", "_") if flag.startswith("--") else flag


def _defined_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and of its subcommands (argparse keeps no public list)."""
    flags: set[str] = set()
    for action in parser._actions:
        flags.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _defined_flags(sub)
    return flags


def normalize_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Accept the other spelling of every long flag (``-`` for ``_`` or back) as an alias of the defined one.

    Tokens after ``--`` and values (tokens that are not flags) are left as they are.
    """
    defined = _defined_flags(parser)
    by_canonical = {canonical_flag(flag): flag for flag in defined if flag.startswith("--")}
    out: list[str] = []
    for index, token in enumerate(argv):
        if token == "--":
            return out + argv[index:]
        if token.startswith("--") and len(token) > 2:
            name, sep, value = token.partition("=")
            if name not in defined and canonical_flag(name) in by_canonical:
                token = by_canonical[canonical_flag(name)] + sep + value
        out.append(token)
    return out


def build_parser(name: str, module) -> argparse.ArgumentParser:
    """The parser of command ``name``: the module's options, the shared formatter and epilog."""
    parser = argparse.ArgumentParser(
        prog=f"medseg {name}", description=COMMANDS[name][1], formatter_class=HelpFormatter, epilog=ALIAS_NOTE
    )
    module.add_arguments(parser)
    return parser


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    body = "\n".join(lines)
    return (
        f"usage: medseg COMMAND [options]\n\ncommands:\n{body}\n\n'medseg COMMAND --help' for options. "
        "Exit status: 0 done, 2 bad input, 1 failure, 130 interrupted."
    )


def _command_name(text: str) -> str | None:
    """The command ``text`` names, accepting ``lr_find`` for ``lr-find``."""
    for name in COMMANDS:
        if text in (name, name.replace("-", "_")):
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one ``medseg`` command; returns its exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return EXIT_OK if argv else EXIT_BAD_INPUT
    if argv[0] == "--version":
        from medseg import __version__

        print(__version__)
        return EXIT_OK
    name = _command_name(argv[0])
    if name is None:
        print(f"medseg: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from medseg.bundle.errors import BundleInputError

    try:
        module = importlib.import_module(COMMANDS[name][0])
        parser = build_parser(name, module)
        if getattr(module, "ACCEPTS_OVERRIDES", False):  # medseg run: unknown --id value pairs are overrides
            args, extra = parser.parse_known_args(normalize_flags(parser, argv[1:]))
            args.overrides = extra
        else:
            args = parser.parse_args(normalize_flags(parser, argv[1:]))  # a bad option exits 2 (argparse)
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        from medseg.console import INTERRUPTED

        print(f"medseg {name}: {INTERRUPTED}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BundleInputError as err:  # bad input met anywhere below (a bundle run, a strategy, a datalist)
        print(f"medseg {name}: {err.message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
