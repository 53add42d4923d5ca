"""Render every bundle's configs from one shared source (``bundles/_source``).

The six bundles share most of their wiring. It lives once, in ``bundles/_source``:

- ``base/<kind>.json``: the full ``train.json`` / ``inference.json`` and the ``evaluate.json`` /
  ``multi_gpu_train.json`` overlays every bundle starts from;
- ``layers/<layer>.json``: what a family of bundles shares (``cardiac``, ``dermoscopy``, ``isic``, ``flexunet``);
- ``<bundle>.json``: what is this bundle's own, and the layers it takes (``"layers": ["cardiac"]``).

A layer or bundle file holds one section per config kind (``train``, ``evaluate``, ``inference``,
``multi_gpu_train``) plus ``common``, applied to both stand-alone configs (``train`` and ``inference``) so that the
network, labels, sizes and intensity transforms are said once. Sections merge exactly as MONAI merges the files of
``--config_file "['a.json','b.json']"`` (``monai.bundle.utils.merge_kv``): an id path (``train#augmentation``)
replaces that entry, a ``+`` prefix appends to a list or updates a dict.

The rendered ``bundles/<bundle>/configs/<kind>.json`` files are committed and self-contained, so
``python -m monai.bundle run`` and packaged bundles need nothing from here; a test fails when a committed config
differs from its rendering. After editing the source::

    python -m medseg.bundle.render           # rewrite the configs
    python -m medseg.bundle.render --check   # exit 1 and name the configs that differ
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

KINDS = ("train", "evaluate", "inference", "multi_gpu_train")
STANDALONE = ("train", "inference")  # kinds that take the "common" section
SECTIONS = ("common", *KINDS)


class RenderError(ValueError):
    """A source file is missing or malformed (the message names it)."""


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RenderError(f"{path}: missing") from None
    except json.JSONDecodeError as err:
        raise RenderError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise RenderError(f"{path}: must hold a JSON object")
    return data


def _check_sections(path: Path, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RenderError(f"{path}: unknown section(s) {unknown}; use {list(allowed)}")


def bundle_names(source_dir: Path) -> list[str]:
    """The bundles the source describes (one ``<bundle>.json`` each)."""
    return sorted(p.stem for p in source_dir.glob("*.json"))


def render_bundle(name: str, source_dir: Path) -> dict[str, dict[str, Any]]:
    """Return ``{kind: config}`` for bundle ``name`` from ``source_dir``.

    Args:
        name: the bundle's folder name; also set as the configs' ``bundle_name`` id.
        source_dir: the ``bundles/_source`` folder.

    Raises:
        RenderError: a source file is missing, not JSON, or has an unknown section or layer.
    """
    from monai.bundle import ConfigParser
    from monai.bundle.utils import merge_kv

    own_path = source_dir / f"{name}.json"
    own = _read(own_path)
    _check_sections(own_path, own, ("layers", *SECTIONS))
    parts, part_paths = [], []
    for layer in own.get("layers", []):
        layer_path = source_dir / "layers" / f"{layer}.json"
        layer_data = _read(layer_path)
        _check_sections(layer_path, layer_data, SECTIONS)
        parts.append(layer_data)
        part_paths.append(layer_path)
    parts.append(own)
    part_paths.append(own_path)

    rendered = {}
    for kind in KINDS:
        base = copy.deepcopy(_read(source_dir / "base" / f"{kind}.json"))
        if kind in STANDALONE:
            # a stand-alone config: ids resolve inside it, as MONAI merges files at run time
            parser = ConfigParser(base)
            parser["bundle_name"] = name
            for part, path in zip(parts, part_paths, strict=True):
                for section in ("common", kind):
                    for key, value in copy.deepcopy(part.get(section, {})).items():
                        try:
                            merge_kv(parser, key, value)
                        except (KeyError, ValueError) as err:
                            raise RenderError(f"{path}: {section}: {key!r} does not fit {kind}.json ({err})") from None
            rendered[kind] = parser.get()
        else:
            # an overlay: its keys (``network_def#deep_supervision``) stay literal, to be merged over train.json
            for part in parts:
                for key, value in copy.deepcopy(part.get(kind, {})).items():
                    merge_kv(base, key, value)
            rendered[kind] = base
    return rendered


def config_text(config: dict[str, Any]) -> str:
    """The committed form of a config: 4-space JSON with a final newline."""
    return json.dumps(config, indent=4) + "\n"


def render_all(bundles_dir: Path, check: bool = False) -> list[Path]:
    """Render every bundle under ``bundles_dir``; return the config files that differ (or that were rewritten).

    Args:
        bundles_dir: the folder holding ``_source`` and the bundle folders.
        check: only compare, write nothing.
    """
    source_dir = bundles_dir / "_source"
    texts = {  # everything is rendered before anything is written: a bad source leaves every config as it was
        bundles_dir / name / "configs" / f"{kind}.json": config_text(config)
        for name in bundle_names(source_dir)
        for kind, config in render_bundle(name, source_dir).items()
    }
    changed = [path for path, text in texts.items() if not path.is_file() or path.read_text() != text]
    if not check:
        for path in changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(texts[path])
    return changed


def default_bundles_dir() -> Path:
    """The repository's ``bundles`` folder (this command is for people editing a source checkout)."""
    return Path(__file__).resolve().parents[2] / "bundles"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medseg.bundle.render", description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=Path, default=default_bundles_dir(), help="folder holding _source/")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a config differs")
    args = parser.parse_args(argv)
    try:
        changed = render_all(args.bundles, check=args.check)
    except RenderError as err:
        print(f"render: {err}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"{'differs' if args.check else 'rendered'}: {path}")
    if args.check and changed:
        print("run `python -m medseg.bundle.render` and commit the configs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
