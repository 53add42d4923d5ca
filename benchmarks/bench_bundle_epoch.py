"""One training epoch through ``monai.bundle`` against a plain PyTorch loop, side by side.

For each bundle (``isic_flexunet_resnet34`` and ``cardiac_unet`` by default) this builds the bundle's
training workflow from its own ``train.json`` (as ``python -m monai.bundle run`` does), then times

* **bundle**: ``train#trainer`` epochs (ignite ``SupervisedTrainer`` with all of the bundle's handlers:
  stats, progress bar, LR schedule, validation hook; validation itself is pushed past the run), and
* **plain**: a hand-written loop over the *same* in-memory ``train#dataloader`` (a ``CacheDataset``: the
  same cached images and the same random augmentations), with a fresh copy of the same network, loss,
  optimiser, batch size and thread count.

Epochs alternate (bundle, plain, bundle, ...) so both see the same machine load; the first of each is a
warm-up and is not counted; the medians of wall time and of process CPU time are reported, with the ratios
bundle / plain. Phantom data are generated with ``data_prep`` unless ``--data`` points at converted
datasets.

Example:
    python benchmarks/bench_bundle_epoch.py --threads 2 --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# bundle -> (phantom kind, phantom size, converter extra args)
BENCH_BUNDLES = {
    "isic_flexunet_resnet34": ("isic", 32, ["--max_size", "320"]),
    "cardiac_unet": ("cardiac-png", 64, []),
}


def make_data(kind: str, n: int, extra: list[str], root: Path) -> Path:
    """Phantom images of ``kind`` converted by data_prep; returns the datalist folder."""
    from data_prep.__main__ import main as data_prep_main

    raw, out = root / f"raw_{kind}", root / kind
    if not (out / "datalist.json").is_file():
        if data_prep_main(["phantom", kind, "--out", str(raw), "--n", str(n)]) or data_prep_main(
            [kind, "--src", str(raw), "--out", str(out), *extra]
        ):
            raise SystemExit(f"bench: could not make {kind} phantoms")
    return out


def build_bundle(bundle: str, data: Path, out: Path, epochs: int, overrides: dict):
    """The bundle's training workflow (validation pushed past the run), initialised; returns it."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=str(REPO_ROOT / "bundles" / bundle / "configs" / "train.json"), workflow_type="train",
        dataset_dir=str(data), output_dir=str(out), max_epochs=epochs + 1, val_interval=10**6, num_workers=0,
        **overrides,
    )
    workflow.initialize()
    return workflow


class PlainLoop:
    """A hand-written loop over the bundle's own dataloader, with a fresh copy of its network, loss and optimiser."""

    def __init__(self, workflow) -> None:
        from monai.bundle import ConfigParser

        parser = ConfigParser(workflow.parser.get())  # the same (overridden) config, parsed afresh
        self.device = parser.get_parsed_content("device")
        self.network = parser.get_parsed_content("network_def").to(self.device)
        self.loss_fn = parser.get_parsed_content("loss")
        import torch

        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=parser["learning_rate"])
        self.loader = workflow.parser.get_parsed_content("train#dataloader")  # the same in-memory data

    def epoch(self) -> None:
        self.network.train()
        for batch in self.loader:
            # plain tensors, as a hand-written PyTorch loop has them (MetaTensor's metadata copying costs time)
            images, labels = batch["image"].as_tensor(), batch["label"].as_tensor()
            images, labels = images.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.network(images), labels)
            loss.backward()
            self.optimizer.step()


def interleaved_epochs(workflow, epochs: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Alternate one bundle epoch and one plain epoch, ``epochs`` + 1 times; returns (wall, cpu) seconds of each.

    Alternating keeps both sides under the same machine load; CPU time (all threads of this process) is
    reported beside wall time because it does not count time lost to other processes.
    """
    from ignite.engine import Events

    trainer = workflow.parser.get_parsed_content("train#trainer")
    plain = PlainLoop(workflow)
    started, bundle_times, plain_times = [(0.0, 0.0)], [], []

    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def stop(_=None) -> tuple[float, float]:
        wall, cpu = now()
        return wall - started[0][0], cpu - started[0][1]

    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: started.__setitem__(0, now()))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: bundle_times.append(stop()))
    for i in range(epochs + 1):
        trainer.state.max_epochs = i + 1  # resume the same trainer for one more epoch
        trainer.run()
        started[0] = now()
        plain.epoch()
        plain_times.append(stop())
    return bundle_times[1:], plain_times[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", default=list(BENCH_BUNDLES), choices=list(BENCH_BUNDLES))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both loops")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--spatial-size", type=int, default=None, help="override the bundles' spatial size")
    parser.add_argument("--data", default=None, help="folder to keep phantom data in (default: temporary)")
    args = parser.parse_args(argv)

    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.WARNING)
    tmp = tempfile.TemporaryDirectory()
    root = Path(args.data or tmp.name)
    rows = []
    for bundle in args.bundles:
        kind, n, extra = BENCH_BUNDLES[bundle]
        data = make_data(kind, n, extra, root)
        # the bundle logs to MLflow as it always does, but into the benchmark's throw-away store
        overrides = {"batch_size": args.batch_size, "tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}
        if args.spatial_size:
            overrides["spatial_size"] = [args.spatial_size, args.spatial_size]
        workflow = build_bundle(bundle, data, root / f"out_{bundle}", args.epochs, overrides)
        bundle_t, plain_t = interleaved_epochs(workflow, args.epochs)
        wall = [statistics.median(t[0] for t in times) for times in (bundle_t, plain_t)]
        cpu = [statistics.median(t[1] for t in times) for times in (bundle_t, plain_t)]
        size = workflow.parser["spatial_size"]
        iters = len(workflow.parser.get_parsed_content("train#dataloader"))
        rows.append((bundle, iters, size, wall, cpu))
    print(f"\ntorch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, "
          f"median of {args.epochs} epochs after a warm-up")
    print(f"{'bundle':26s} {'iters':>5s} {'size':>9s} {'wall: bundle':>12s} {'plain':>7s} {'ratio':>6s}"
          f" {'cpu: bundle':>12s} {'plain':>7s} {'ratio':>6s}")
    for bundle, iters, size, wall, cpu in rows:
        print(f"{bundle:26s} {iters:5d} {str(size[0]) + 'x' + str(size[1]):>9s} {wall[0]:12.2f} {wall[1]:7.2f} "
              f"{wall[0] / wall[1]:6.3f} {cpu[0]:12.2f} {cpu[1]:7.2f} {cpu[0] / cpu[1]:6.3f}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
