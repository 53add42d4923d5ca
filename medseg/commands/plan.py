"""``medseg plan``: auto-configure a bundle for a dataset and a time budget (writes plans.json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle name (see: medseg bundles) or folder")
    parser.add_argument("--dataset_dir", required=True, help="data_prep output folder (datalist.json, stats.json)")
    parser.add_argument("--time_budget", default="15m", help="wall time for training, e.g. 15m, 90s, 1h (default: 15m)")
    parser.add_argument("--max_size", type=int, help="largest side to train at (default: the bundle's spatial_size)")
    parser.add_argument(
        "--min_steps", type=int,
        help="training steps the budget should buy; fewer at the full size trains at a smaller size, down to half "
             "(default: 500; 0 keeps the full size)",
    )
    parser.add_argument("--out", help="plan file to write (default: DATASET_DIR/plans.json)")


def run(args: argparse.Namespace) -> int:
    from medseg.api import plan as make_plan
    from medseg.bundle.errors import BundleInputError
    from medseg.planning import describe_plan

    try:
        plan = make_plan(args.bundle, args.dataset_dir, args.time_budget, max_size=args.max_size,
                         min_steps=args.min_steps, out=args.out)
    except BundleInputError as err:
        print(f"medseg plan: {err}", file=sys.stderr)
        return 2
    record = plan["plan"]
    print(f"plan for {record['bundle']} on {record['dataset']} ({record['time_budget_s'] / 60:.1f} min budget):")
    print("\n".join(f"  {line}" for line in describe_plan(plan)))
    out = Path(record["path"])
    bundle = f"bundles/{record['bundle']}/configs"
    print(f"wrote {out}; train and predict with it layered on the bundle's configs:")
    data = args.dataset_dir
    print(f"  python -m monai.bundle run --config_file \"['{bundle}/train.json','{out}']\" --dataset_dir {data}")
    print(f"  python -m monai.bundle run --config_file \"['{bundle}/inference.json','{out}']\" --dataset_dir IMAGES")
    return 0
