"""``medseg lr-find``: the learning-rate range test on a bundle (MONAI's ``LearningRateFinder``).

Runs the bundle's network, optimizer and loss over its training data (one pass by default) with an exponentially
growing learning rate, writes ``lr_find.png`` (loss against learning rate) and ``lr_find.json`` under ``--out``,
prints the suggested learning rate (steepest descent of the loss), and records both in an MLflow run
(``<bundle>-lr_find-...``: params, ``suggested_lr``, the curve as ``lr_find_loss``/``lr_find_lr`` per step, the plot).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medseg.strategies.launch import add_common_arguments

    add_common_arguments(parser)
    parser.add_argument("--start_lr", type=float, default=1e-7, help="first learning rate (default 1e-7)")
    parser.add_argument("--end_lr", type=float, default=1.0, help="last learning rate (default 1)")
    parser.add_argument("--num_iter", type=int, help="batches to run (default: one pass over the training data)")


def run(args: argparse.Namespace) -> int:
    from medseg.bundle.errors import BundleInputError
    from medseg.strategies.launch import CommandSetup, check_ids

    try:
        setup = CommandSetup(args, "lr_find")
        parser = setup.parser
        check_ids(parser, ["network", "optimizer", "loss", "train#dataloader", "device"], str(setup.bundle))
        result, plot, data = _find(setup, args)
    except BundleInputError as error:  # StrategyError, or a bad datalist met while running the bundle
        print(f"medseg lr-find: {error}", file=sys.stderr)
        return 2
    print(f"suggested learning rate (steepest descent): {result.suggested_lr:.3g}")
    print(f"plot: {plot}\nvalues: {data}")
    _log(setup, args, result, plot, data)
    return 0


def _find(setup, args):
    from monai.utils import set_determinism

    from medseg.strategies.lr_finder import find_learning_rate, save_result

    parser = setup.parser
    set_determinism(seed=int(parser.get_parsed_content("seed")) if "seed" in parser else 0)
    result = find_learning_rate(
        network=parser.get_parsed_content("network"),
        optimizer=parser.get_parsed_content("optimizer"),
        loss_function=parser.get_parsed_content("loss"),
        data_loader=parser.get_parsed_content("train#dataloader"),
        device=parser.get_parsed_content("device"),
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        num_iter=args.num_iter,
    )
    plot, data = save_result(result, setup.out, title=f"{setup.name}: learning-rate range test")
    return result, plot, data


def _log(setup, args, result, plot, data) -> None:
    from medseg.strategies.runs import ParentRun
    from medseg.tracking import run_name

    params = {
        "bundle": setup.name,
        "start_lr": args.start_lr,
        "end_lr": args.end_lr,
        "num_iter": result.num_iter,
        "strategies": ",".join(setup.strategies) or "none",
        **{f"set.{k}": v for k, v in setup.overrides.items() if k not in ("bundle_root", "dataset_dir")},
    }
    tags = {"medseg.strategy": "lr_find", "medseg.bundle": setup.name, "medseg.run_kind": "lr_find"}
    with ParentRun(setup.experiment, run_name(setup.name, "lr_find"), setup.tracking_uri, tags, params) as run:
        run.log_metrics({"suggested_lr": result.suggested_lr, "suggested_lr_loss": result.suggested_loss})
        run.log_series({"lr_find_lr": result.lrs, "lr_find_loss": result.losses})
        run.log_artifact(str(plot), "plots")
        run.log_artifact(str(data))
        print(f"MLflow: run {run.run_name} in experiment {run.experiment_name} ({run.tracking_uri})")
