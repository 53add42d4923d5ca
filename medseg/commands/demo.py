"""``medseg demo``: the whole path on built-in phantom data, on CPU.

Generates phantom datasets in the real sources' layouts and converts them to datalists with
``data_prep``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

# phantom kind -> (converter source name, number of images / patients)
DEMO_DATASETS = {"isic": ("isic", 40), "cardiac-png": ("cardiac-png", 60)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="folder for everything the demo writes")
    parser.add_argument("--seed", type=int, default=0)


def prepare(out: Path, seed: int) -> dict[str, Path]:
    """Write phantoms and convert them; returns kind -> datalist folder."""
    from data_prep.__main__ import main as data_prep_main

    folders = {}
    for kind, (source, n) in DEMO_DATASETS.items():
        raw, converted = out / "raw" / kind, out / "data" / kind
        shutil.rmtree(raw, ignore_errors=True)
        if data_prep_main(["phantom", kind, "--out", str(raw), "--n", str(n), "--seed", str(seed)]):
            raise SystemExit(f"demo: phantom {kind} failed")
        if data_prep_main([source, "--src", str(raw), "--out", str(converted), "--seed", str(seed)]):
            raise SystemExit(f"demo: converting {kind} failed")
        folders[kind] = converted
    return folders


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = Path(args.out)
    folders = prepare(out, args.seed)
    for kind, folder in folders.items():
        datalist = json.loads((folder / "datalist.json").read_text())
        counts = ", ".join(f"{len(datalist[s])} {s}" for s in ("training", "validation", "testing"))
        print(f"{kind:12s} {folder / 'datalist.json'}: labels {datalist['labels']}; {counts}")
    print(f"demo finished in {time.perf_counter() - started:.0f}s; everything is under {out}")
    return 0
