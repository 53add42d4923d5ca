"""``medseg progressive``: progressive resizing ("pyramid transfer").

Trains the bundle at each of ``--sizes`` in turn (``spatial_size`` = [s, s]); every stage after the first starts from
the best weights (``model.pt``) of the stage before (``bundles/strategies/init_weights.json``). Stage ``i`` writes
into ``--out/stage<i>_<s>px``. MLflow: one parent run, a child run per stage; the parent gets each stage's
best checkpoint path and the final stage's checkpoint.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medseg.strategies.launch import add_common_arguments

    add_common_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="stage sizes (default 128 256)")
    parser.add_argument(
        "--stage_epochs",
        type=int,
        nargs="+",
        help="epochs of each stage: one value for all, or one per size (default: --max_epochs or the bundle's)",
    )


def run(args: argparse.Namespace) -> int:
    from medseg.bundle.errors import BundleInputError
    from medseg.strategies import StrategyError
    from medseg.strategies.launch import CommandSetup
    from medseg.strategies.progressive import check_sizes

    try:
        setup = CommandSetup(args, "progressive")
        sizes = check_sizes(args.sizes)
        epochs = list(args.stage_epochs or [])
        if len(epochs) not in (0, 1, len(sizes)):
            raise StrategyError(f"--stage_epochs: give one value or one per size ({len(sizes)}), got {epochs}")
        epochs = epochs * len(sizes) if len(epochs) == 1 else epochs
        if "spatial_size" not in setup.parser:
            raise StrategyError(f"{setup.bundle}: the config has no spatial_size id to resize")
        final = _stages(setup, sizes, epochs)
    except BundleInputError as error:  # StrategyError, or a bad datalist met while running the bundle
        print(f"medseg progressive: {error}", file=sys.stderr)
        return 2
    print(f"final weights ({sizes[-1]}px): {final}")
    return 0


def _stages(setup, sizes: list[int], epochs: list[int]):
    from medseg.strategies.progressive import best_checkpoint
    from medseg.strategies.runs import ParentRun
    from medseg.tracking import run_name

    params = {
        "bundle": setup.name,
        "sizes": sizes,
        "stage_epochs": epochs or "bundle default",
        "strategies": ",".join(setup.strategies) or "none",
    }
    tags = {"medseg.strategy": "progressive", "medseg.bundle": setup.name}
    previous = None
    with ParentRun(setup.experiment, run_name(setup.name, "progressive"), setup.tracking_uri, tags, params) as parent:
        for index, size in enumerate(sizes, start=1):
            stage_dir = setup.out / f"stage{index}_{size}px"
            child_params = {"stage": index, "stage_size": size, "init_weights": previous or "bundle default"}
            child_name, child_id = parent.child(f"stage{index}-{size}px", {"medseg.stage": index}, child_params)
            overrides = {
                "spatial_size": [size, size],
                "output_dir": str(stage_dir),
                **parent.tracking_overrides(child_name),
            }
            if epochs:
                overrides["max_epochs"] = epochs[index - 1]
            strategies = []
            if previous is not None:
                overrides["init_weights"] = str(previous)
                strategies.append("init_weights")
            print(f"stage {index}/{len(sizes)}: {size}x{size} px -> {stage_dir}", flush=True)
            setup.run(overrides, strategies)
            parent.end_child(child_id)
            previous = best_checkpoint(stage_dir)
            parent.log_params({f"stage{index}.checkpoint": previous})
        parent.log_params({"final_checkpoint": previous})
    return previous
