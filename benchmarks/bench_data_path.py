"""Which training data path pays on this machine: DataLoader workers, ThreadDataLoader, CacheDataset runtime_cache.

For each bundle (``cardiac_unet`` at 96 px, ``isic_flexunet_resnet34`` at 224 px) this takes the bundle's own
training preprocessing (from ``train.json``: deterministic load/check/resize cached once, random augmentation per
epoch) and times one epoch of each data path, alternating the paths so they see the same machine load:

* ``DataLoader w0``: ``CacheDataset`` + ``DataLoader(num_workers=0)`` (augmentation in the training thread),
* ``DataLoader w2``: the same with 2 worker processes, started every epoch (the bundles' setting before this),
* ``DataLoader w2 persistent``: 2 workers kept between epochs,
* ``ThreadDataLoader``: ``monai.data.ThreadDataLoader(buffer_size=1)``, augmentation in a background thread,
* ``runtime_cache``: ``CacheDataset(runtime_cache=True)``, nothing cached up front, each item cached on first use.

Each epoch is timed *with* a plain fp32 training step of the bundle's network per batch (what matters: whether the
loading overlaps the compute), and the loader alone. Also reported: the up-front caching time and the bytes one
cached item holds (what ``cache_rate`` must bound on a large dataset).

Example:
    python benchmarks/bench_data_path.py --epochs 3
    python benchmarks/bench_data_path.py --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_bundle_epoch import BENCH_BUNDLES, PlainLoop, build_bundle, make_data  # noqa: E402

BENCH_SIZES = {"cardiac_unet": (96, 16), "isic_flexunet_resnet34": (224, 8)}


def item_bytes(item: dict) -> int:
    """Bytes of the tensors/arrays in one cached item."""
    return sum(int(getattr(v, "nbytes", 0)) for v in item.values())


def make_loaders(workflow, batch: int) -> dict:
    """The data paths to compare, over the bundle's own training data and preprocessing."""
    from monai.data import CacheDataset, DataLoader, ThreadDataLoader

    cached = workflow.parser.get_parsed_content("train#dataset")
    data = workflow.parser.get_parsed_content("train_datalist")
    transform = workflow.parser.get_parsed_content("train#preprocessing")
    lazy = CacheDataset(data, transform, cache_rate=1.0, runtime_cache=True, progress=False)
    return {
        "DataLoader w0": DataLoader(cached, batch_size=batch, shuffle=True, num_workers=0),
        "DataLoader w2": DataLoader(cached, batch_size=batch, shuffle=True, num_workers=2),
        "DataLoader w2 persistent": DataLoader(
            cached, batch_size=batch, shuffle=True, num_workers=2, persistent_workers=True
        ),
        "ThreadDataLoader": ThreadDataLoader(cached, batch_size=batch, shuffle=True, num_workers=0, buffer_size=1),
        "runtime_cache": DataLoader(lazy, batch_size=batch, shuffle=True, num_workers=0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", default=list(BENCH_SIZES), choices=list(BENCH_SIZES))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per path (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=None, help="phantom images (default: 4 batches)")
    parser.add_argument("--spatial-size", type=int, default=None)
    parser.add_argument(
        "--loader-only",
        nargs="*",
        default=[],
        choices=list(BENCH_SIZES),
        help="bundles timed without the training step (their step dwarfs loading on a slow box)",
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke run: 64 px, 8 images, 1 epoch")
    parser.add_argument("--data", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.spatial_size, args.n, args.epochs = 64, 8, 1

    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.WARNING)
    tmp = tempfile.TemporaryDirectory()
    root = Path(args.data or tmp.name)
    load_before = os.getloadavg()
    for bundle in args.bundles:
        size, batch = BENCH_SIZES[bundle]
        size = args.spatial_size or size
        batch = min(batch, args.n) if args.n else batch
        kind, _, extra = BENCH_BUNDLES[bundle]
        n = args.n or 4 * batch
        data = make_data(kind, n, extra, root / f"n{n}")
        start = time.perf_counter()
        workflow = build_bundle(
            bundle,
            data,
            root / f"out_{bundle}",
            1,
            {"batch_size": batch, "spatial_size": [size, size], "tracking_uri": f"sqlite:///{root / 'mlflow.db'}"},
        )
        cached = workflow.parser.get_parsed_content("train#dataset")
        cache_s = time.perf_counter() - start
        per_item = item_bytes(cached._cache[0]) if getattr(cached, "_cache", None) else 0
        loaders = make_loaders(workflow, batch)
        step = PlainLoop(workflow)
        with_step: dict[str, list[float]] = {name: [] for name in loaders}
        alone: dict[str, list[float]] = {name: [] for name in loaders}
        for _ in range(args.epochs + 1):
            for name, loader in loaders.items():
                t0 = time.perf_counter()
                for _batch in loader:
                    pass
                alone[name].append(time.perf_counter() - t0)
                if bundle in args.loader_only:
                    with_step[name].append(float("nan"))
                    continue
                step.loader = loader
                t0 = time.perf_counter()
                step.epoch()
                with_step[name].append(time.perf_counter() - t0)
        print(
            f"\n{bundle}: {n} images, {size} px, batch {batch}; build + cache {cache_s:.1f} s (workflow "
            f"included), {per_item / 1e6:.2f} MB per cached item"
        )
        print(f"{'data path':26s} {'loader only s':>14s} {'epoch with step s':>18s} {'vs DataLoader w0':>17s}")
        base = statistics.median(with_step["DataLoader w0"][1:])
        for name in loaders:
            a, w = statistics.median(alone[name][1:]), statistics.median(with_step[name][1:])
            print(f"{name:26s} {a:14.2f} {w:18.2f} {w / base:17.2f}")
        print(f"{'runtime_cache 1st epoch':26s} {alone['runtime_cache'][0]:14.2f}")
    load_after = os.getloadavg()
    print(
        f"\ntorch {torch.__version__}, {args.threads} threads, medians of {args.epochs} epochs after a warm-up; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
