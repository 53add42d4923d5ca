"""A bundle training epoch with medseg's runtime defaults against a plain fp32 PyTorch loop, side by side.

For each bundle (``isic_flexunet_resnet34`` at 224 px batch 8 and ``cardiac_unet`` at 96 px batch 16 by default) this
builds the bundle's training workflow from its own ``train.json`` with the runtime wiring of
:data:`RUNTIME_CONFIG` applied as overrides (``amp: auto``, ``channels_last: auto``, ``compile: false``: exactly the
JSON the bundles get), then times

* **defaults**: ``train#trainer`` epochs (ignite ``SupervisedTrainer`` with every handler of the bundle; validation
  pushed past the run), and
* **plain fp32**: a hand-written loop (zero_grad, forward, DiceFocalLoss, backward, Adam) over the *same* in-memory
  ``train#dataloader``, with a fresh fp32 channels-first copy of the network, the same batch and thread count,

alternating epochs (defaults, plain, defaults, ...) so that both see the same machine load; the first of each is a
warm-up. Medians of wall time are reported with the ratio defaults / plain, and the GFLOP/s reached in the training
step (FLOPs of one forward + backward counted with ``torch.utils.flop_counter.FlopCounterMode``). ``--compile`` adds
a column with ``compile: true``, timed over all epochs *including* the first (where compiling happens), and prints
after how many minutes of training the compiled run is ahead of the eager defaults.
``--amp bf16`` forces bf16 (to see what it costs on a CPU without bf16 instructions).

Example:
    python benchmarks/bench_training_speed.py --epochs 3            # the bundles' own sizes
    python benchmarks/bench_training_speed.py --quick               # CI smoke run (tiny sizes, 1 epoch)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_bundle_epoch import BENCH_BUNDLES, PlainLoop, build_bundle, make_data  # noqa: E402

# The runtime wiring every bundle's train.json gets (README: "Runtime settings"); "network" wraps the bundle's own
# network expression, see network_expression().
RUNTIME_CONFIG = {
    "amp": "auto",
    "amp_plan": "$medseg.runtime.resolve_amp(@amp, @device)",
    "channels_last": "auto",
    "use_channels_last": "$medseg.runtime.resolve_channels_last(@channels_last, @network_def, @amp_plan)",
    "compile": False,
    "prepare_batch": {"_target_": "medseg.runtime.ChannelsLastPrepareBatch", "enabled": "@use_channels_last"},
    "train#inferer": {
        "_target_": "medseg.runtime.AmpInferer",
        "inferer": {"_target_": "SimpleInferer"},
        "plan": "@amp_plan",
    },
    "validate#inferer": {
        "_target_": "medseg.runtime.AmpInferer",
        "inferer": {"_target_": "SimpleInferer"},
        "plan": "@amp_plan",
    },
    "train#trainer#amp": "$medseg.runtime.engine_amp(@amp_plan)",
    "train#trainer#amp_kwargs": "$medseg.runtime.engine_amp_kwargs(@amp_plan)",
    "train#prepare_batch": {
        "_target_": "medseg.runtime.ChannelsLastPrepareBatch",
        "enabled": "@use_channels_last",
        "plain_tensors": True,
    },
    "train#trainer#prepare_batch": "@train#prepare_batch",
    "validate#evaluator#amp": "$medseg.runtime.engine_amp(@amp_plan)",
    "validate#evaluator#amp_kwargs": "$medseg.runtime.engine_amp_kwargs(@amp_plan)",
    "validate#evaluator#prepare_batch": "@prepare_batch",
}
BENCH_SIZES = {"isic_flexunet_resnet34": (224, 8), "cardiac_unet": (96, 16)}


def network_expression(original: str) -> str:
    """The bundle's ``network`` expression with ``.to(@device)`` replaced by ``medseg.runtime.prepare_network``."""
    inner = original.removeprefix("$").removesuffix(".to(@device)")
    return f"$medseg.runtime.prepare_network({inner}, @device, channels_last=@use_channels_last, compile=@compile)"


def runtime_overrides(train_json: Path, **settings) -> dict:
    """:data:`RUNTIME_CONFIG` (with ``settings`` such as ``compile=True``) as overrides for the bundle's train.json."""
    config = json.loads(train_json.read_text())
    overrides = dict(RUNTIME_CONFIG, **settings)
    overrides["imports"] = config["imports"] + ["$import medseg.runtime"]
    overrides["network"] = network_expression(config["network"])
    overrides["initialize"] = config["initialize"] + [
        "$medseg.runtime.log_runtime(@amp_plan, @use_channels_last, @compile, @device)"
    ]
    return overrides


def step_flops(network, batch) -> int:
    """FLOPs of one training step's forward and backward on ``batch`` (a copy of the network: BN stats untouched)."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = copy.deepcopy(network).float().train()
    images = batch["image"].as_tensor() if hasattr(batch["image"], "as_tensor") else batch["image"]
    with FlopCounterMode(display=False) as counter:
        net(images.float()).float().sum().backward()
    del net
    torch.set_grad_enabled(True)
    return counter.get_total_flops()


def time_columns(workflows: dict, epochs: int) -> dict[str, list[float]]:
    """Alternate one epoch of each workflow and of the plain loop, ``epochs`` + 1 times; wall seconds per epoch."""
    from ignite.engine import Events

    first = next(iter(workflows.values()))
    plain = PlainLoop(first)
    times: dict[str, list[float]] = {name: [] for name in workflows} | {"plain": []}
    started = [0.0]
    trainers = {}
    for name, workflow in workflows.items():
        trainer = workflow.parser.get_parsed_content("train#trainer")
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: started.__setitem__(0, time.perf_counter()))
        trainer.add_event_handler(
            Events.EPOCH_COMPLETED, lambda _, n=name: times[n].append(time.perf_counter() - started[0])
        )
        trainers[name] = trainer
    for i in range(epochs + 1):
        for trainer in trainers.values():
            trainer.state.max_epochs = i + 1  # resume the same trainer for one more epoch
            trainer.run()
        start = time.perf_counter()
        plain.epoch()
        times["plain"].append(time.perf_counter() - start)
    return times


def compile_payback(compile_times: list[float], defaults_s: float) -> dict[str, float]:
    """What compiling costs once and wins per epoch: its first epoch (compiling included), the median of the rest,
    and the training time after which the compiled run is ahead of the eager defaults (inf when it never is)."""
    first, rest = compile_times[0], compile_times[1:]
    steady = statistics.median(rest) if rest else float("nan")
    gain = defaults_s - steady
    overhead = first - steady
    epochs = overhead / gain if gain > 0 else float("inf")
    return {"compile_first_s": first, "compile_steady_s": steady, "compile_payback_min": epochs * defaults_s / 60}


def payback_line(row: dict) -> str:
    """One line: compiling's one-off cost, its per-epoch gain, and when it pays back."""
    line = (
        f"compile: first epoch {row['compile_first_s']:.1f} s (compiling), then {row['compile_steady_s']:.2f} s per "
        f"epoch against the eager defaults' {row['defaults_s']:.2f} s"
    )
    if row["compile_payback_min"] == float("inf"):
        return line + ": never pays back"
    return line + f": ahead after {row['compile_payback_min']:.1f} minutes of training"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", default=list(BENCH_SIZES), choices=list(BENCH_SIZES))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for every loop")
    parser.add_argument("--amp", default="auto", help="the amp setting for the defaults column (auto, bf16, ...)")
    parser.add_argument("--compile", action="store_true", help="add a compile: true column")
    parser.add_argument("--spatial-size", type=int, default=None, help="override the sizes (default: 224 / 96)")
    parser.add_argument("--batch-size", type=int, default=None, help="override the batch sizes (default: 8 / 16)")
    parser.add_argument("--n", type=int, default=None, help="phantom images per bundle (default: 2 batches)")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: 64 px, batch 2, 1 epoch")
    parser.add_argument("--data", default=None, help="folder to keep phantom data in (default: temporary)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.spatial_size, args.batch_size, args.epochs, args.n = 64, 2, 1, 4

    import logging

    import torch

    from medseg.runtime import describe_runtime

    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.WARNING)
    tmp = tempfile.TemporaryDirectory()
    root = Path(args.data or tmp.name)
    load_before = os.getloadavg()
    rows = []
    for bundle in args.bundles:
        size, batch = BENCH_SIZES[bundle]
        size, batch = args.spatial_size or size, args.batch_size or batch
        kind, _, extra = BENCH_BUNDLES[bundle]
        n = args.n or 2 * batch
        data = make_data(kind, n, extra, root / f"n{n}")
        train_json = Path(__file__).resolve().parents[1] / "bundles" / bundle / "configs" / "train.json"
        common = {"batch_size": batch, "spatial_size": [size, size], "tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}
        columns = {"defaults": {"amp": args.amp}}
        if args.compile:
            columns["compile"] = {"amp": args.amp, "compile": True}
        workflows = {
            name: build_bundle(
                bundle,
                data,
                root / f"out_{bundle}_{name}",
                args.epochs,
                common | runtime_overrides(train_json, **settings),
            )
            for name, settings in columns.items()
        }
        first = workflows["defaults"]
        summary = describe_runtime(
            first.parser.get_parsed_content("amp_plan"),
            first.parser.get_parsed_content("use_channels_last"),
            False,
            first.parser.get_parsed_content("device"),
        )
        loader = first.parser.get_parsed_content("train#dataloader")
        flops = step_flops(first.parser.get_parsed_content("network_def"), next(iter(loader)))
        times = time_columns(workflows, args.epochs)
        iters = len(loader)
        row = {
            "bundle": bundle,
            "size": size,
            "batch": batch,
            "iterations": iters,
            "runtime": summary,
            "gflop_per_step": flops / 1e9,
        }
        for name, values in times.items():
            timed = values if name == "compile" else values[1:]  # compile: every epoch counts, compiling included
            row[f"{name}_s"] = statistics.median(timed) if name != "compile" else sum(timed) / len(timed)
            row[f"{name}_gflops"] = flops * iters / row[f"{name}_s"] / 1e9
            row[f"{name}_all_s"] = values
        if "compile" in times:
            row |= compile_payback(times["compile"], row["defaults_s"])
        rows.append(row)
    load_after = os.getloadavg()
    print(
        f"\ntorch {torch.__version__}, {args.threads} threads, median of {args.epochs} epochs after a warm-up "
        f"(compile: mean over all {args.epochs + 1} epochs incl. compiling); load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    for row in rows:
        print(f"{row['bundle']}: {row['runtime']}")
    names = [n for n in ("plain", "defaults", "compile") if f"{n}_s" in rows[0]]
    header = f"{'bundle':24s} {'size':>4s} {'batch':>5s} {'it':>3s} {'GFLOP/step':>10s}"
    header += "".join(f" {n + ' s':>11s} {'GFLOP/s':>8s}" for n in names)
    header += "".join(f" {n + '/plain':>15s}" for n in names[1:])
    print(header)
    for row in rows:
        line = f"{row['bundle']:24s} {row['size']:4d} {row['batch']:5d} {row['iterations']:3d} "
        line += f"{row['gflop_per_step']:10.1f}"
        line += "".join(f" {row[n + '_s']:11.2f} {row[n + '_gflops']:8.1f}" for n in names)
        line += "".join(f" {row[n + '_s'] / row['plain_s']:15.2f}" for n in names[1:])
        print(line)
    for row in rows:
        if "compile_steady_s" in row:
            print(f"{row['bundle']}: {payback_line(row)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load": [load_before, load_after], "rows": rows}, indent=1))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
