"""ISIC conversion throughput and peak memory, side by side with a plain PIL loop.

For each ``--n`` (phantom images), in one run: the time to write the ISIC 2017 phantom, then, each in a fresh child
process so that peak memory is its own,

* ``plain PIL loop``: decode every image and mask, shrink to ``--max_size`` (LANCZOS / NEAREST), save as PNG (an
  image already small enough is hard-linked, as data_prep does): the least work a conversion can do, one process;
* ``data_prep --workers 1`` and ``--workers 2``: ``python -m data_prep isic --max_size M`` on the same files, which also
  checks every mask, binarises it, splits, and writes stats and provenance (sha256 of every source file).

Peak memory is the child's ``ru_maxrss`` (and, for ``--workers 2``, the largest worker's). Prints a table and writes
JSON. Not part of the test suite.

Example:
    python benchmarks/bench_isic_conversion.py --n 1000 5000 --json benchmarks/bench_isic_conversion.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _peak_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


def plain_loop(src: Path, out: Path, max_size: int) -> int:
    """Decode, shrink and save every image and mask of the phantom with PIL only; returns the images done."""
    from PIL import Image

    from data_prep.imageio import resize_to_max

    count = 0
    for data_dir in sorted(src.glob("*_Data")):
        truth_dir = src / data_dir.name.replace("_Data", "_Part1_GroundTruth")
        for image_path in sorted(data_dir.glob("ISIC_???????.jpg")):
            original = Image.open(image_path).convert("RGB")
            image = resize_to_max(original, max_size, Image.Resampling.LANCZOS)
            if image is original:  # small enough: data_prep links it unchanged, so does this loop
                os.link(image_path, out / image_path.name)
            else:
                image.save(out / f"{image_path.stem}.png")
            mask = Image.open(truth_dir / f"{image_path.stem}_segmentation.png")
            mask.resize(image.size, Image.Resampling.NEAREST).save(out / f"{image_path.stem}_mask.png")
            count += 1
    return count


def child(mode: str, src: Path, out: Path, max_size: int) -> dict:
    """Run one measurement in this (fresh) process and return its figures."""
    started = time.perf_counter()
    if mode == "plain":
        out.mkdir(parents=True)
        count = plain_loop(src, out, max_size)
    else:
        from data_prep.__main__ import main

        workers = mode.split("-")[1]
        argv = ["isic", "--src", str(src), "--out", str(out), "--max_size", str(max_size), "--workers", workers]
        if main(argv) != 0:
            raise SystemExit(f"conversion failed: {argv}")
        datalist = json.loads((out / "datalist.json").read_text())
        count = sum(len(datalist[s]) for s in ("training", "validation", "testing"))
    seconds = time.perf_counter() - started
    return {
        "images": count,
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(resource.RUSAGE_SELF),
        "peak_worker_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN),
    }


def measure(mode: str, src: Path, out: Path, max_size: int) -> dict:
    """Run :func:`child` in a fresh interpreter."""
    cmd = [sys.executable, __file__, "--child", mode, "--src", str(src), "--out", str(out), "--max_size", str(max_size)]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


MODES = (("plain", "plain PIL loop"), ("workers-1", "data_prep --workers 1"), ("workers-2", "data_prep --workers 2"))


def run(sizes: list[int], max_size: int, workdir: Path, seed: int) -> dict:
    """Generate each phantom and time every mode on it."""
    sys.path.insert(0, str(REPO))
    from data_prep.phantoms.isic import generate

    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "max_size": max_size,
        "runs": [],
    }
    for n in sizes:
        src = workdir / f"phantom_{n}"
        started = time.perf_counter()
        generate(src, n=n, seed=seed)
        generation = time.perf_counter() - started
        row = {"n": n, "phantom_seconds": generation, "phantom_images_per_s": n / generation, "modes": {}}
        for mode, _ in MODES:
            figures = measure(mode, src, workdir / f"out_{n}_{mode}", max_size)
            figures["images_per_s"] = figures["images"] / figures["seconds"]
            row["modes"][mode] = figures
        plain = row["modes"]["plain"]["images_per_s"]
        for figures in row["modes"].values():
            figures["speed_vs_plain"] = figures["images_per_s"] / plain
        results["runs"].append(row)
    return results


def table(results: dict) -> str:
    """The results as a Markdown table."""
    lines = [
        "| images | method | seconds | images/s | vs plain loop | peak RSS (MB) | peak worker RSS (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["runs"]:
        lines.append(f"| {row['n']} | phantom generation | {row['phantom_seconds']:.1f} | "
                     f"{row['phantom_images_per_s']:.0f} | | | |")
        for mode, label in MODES:
            f = row["modes"][mode]
            worker = f"{f['peak_worker_rss_mb']:.0f}" if mode == "workers-2" else ""
            lines.append(f"| {row['n']} | {label} | {f['seconds']:.1f} | {f['images_per_s']:.0f} | "
                         f"{f['speed_vs_plain']:.2f}x | {f['peak_rss_mb']:.0f} | {worker} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[200], help="phantom sizes to measure (e.g. 1000 5000)")
    parser.add_argument("--max_size", type=int, default=80,
                        help="long-side limit (phantoms are 96..160 px, so the default shrinks every image)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, deleted after)")
    parser.add_argument("--json", default="bench_isic_conversion.json", help="where to write the results")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--src", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, Path(args.src), Path(args.out), args.max_size)))
        return 0
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        results = run(args.n, args.max_size, Path(scratch), args.seed)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
