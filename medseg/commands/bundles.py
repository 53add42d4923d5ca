"""``medseg bundles``: list the bundles medseg can find, or copy one out for editing."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="{list,export}")
    sub.add_parser("list", help="every bundle with its purpose and where it was found (the default)")
    export = sub.add_parser("export", help="copy a bundle into a folder of your own, to edit and run from there")
    export.add_argument("name", help="bundle name (see: medseg bundles)")
    export.add_argument("dir", help="folder to create; the bundle lands in DIR/bundles/NAME so the rule finds it")


def describe(folder: Path) -> str:
    """The first sentence of a bundle's metadata description."""
    try:
        meta = json.loads((folder / "configs" / "metadata.json").read_text())
    except (OSError, ValueError):
        return "(no readable configs/metadata.json)"
    return str(meta.get("description", "")).split(". ")[0].rstrip(".")


def list_bundles() -> int:
    from medseg.bundle.paths import bundles_dirs

    seen = set()
    for folder, where in bundles_dirs():
        names = sorted(p.parent.parent.name for p in folder.glob("*/configs/train.json"))
        names = [n for n in names if n not in seen]
        if not names:
            continue
        print(f"{where}: {folder}")
        width = max(len(n) for n in names)
        for name in names:
            print(f"  {name:<{width}}  {describe(folder / name)}")
            seen.add(name)
    print("\nA name resolves to: an explicit path, else ./bundles/NAME, else the installed bundle.")
    return 0


def export_bundle(name: str, target: str) -> int:
    from medseg.bundle.errors import BundleInputError
    from medseg.bundle.paths import find_bundle

    try:
        source, where = find_bundle(name)
    except BundleInputError as err:
        print(f"medseg bundles export: {err}", file=sys.stderr)
        return 2
    dest = Path(target) / "bundles" / source.name
    if dest.exists():
        print(f"medseg bundles export: {dest} exists; choose another DIR or remove it", file=sys.stderr)
        return 2
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "models", "eval", "predictions"))
    print(f"exported {source.name} ({where}) to {dest}")
    train = f"bundles/{source.name}/configs/train.json"
    print(f"run it from {Path(target)}: python -m monai.bundle run --config_file {train}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "export":
        return export_bundle(args.name, args.dir)
    return list_bundles()
