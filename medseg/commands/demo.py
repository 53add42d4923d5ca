"""``medseg demo``: the whole path on built-in phantom data, on CPU.

Generates phantom datasets in the real sources' layouts, converts them to datalists with ``data_prep``,
trains ``isic_unet`` and ``cardiac_unet`` for a few epochs through their MONAI bundles (the same configs
``python -m monai.bundle run`` uses), evaluates the best checkpoints, predicts masks for a few test
images and prints where everything is.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

# phantom kind -> (converter source name, number of images / patients)
DEMO_DATASETS = {"isic": ("isic", 40), "cardiac-png": ("cardiac-png", 60)}
# bundle -> (phantom kind, config overrides that keep the demo within a few CPU minutes)
DEMO_BUNDLES = {
    "isic_unet": ("isic", {"spatial_size": [64, 64], "batch_size": 8, "max_epochs": 6, "learning_rate": 3e-3}),
    "cardiac_unet": ("cardiac-png", {"spatial_size": [64, 64], "batch_size": 8, "max_epochs": 12,
                                     "learning_rate": 3e-3}),
}
N_PREDICT = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="folder for everything the demo writes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs per bundle (default: 6 for isic_unet, 12 for cardiac_unet)")


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


def _configs(bundle: str, *names: str) -> list[str]:
    from medseg.bundle import bundle_root

    root = Path(bundle_root(bundle))
    files = [root / "configs" / f"{name}.json" for name in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"demo: bundle {bundle} not found ({missing[0]}); run the demo from the repository root")
    return [str(f) for f in files]


def _workflow(bundle: str, names: tuple[str, ...], workflow_type: str, **override):
    from monai.bundle import ConfigWorkflow

    files = _configs(bundle, *names)
    workflow = ConfigWorkflow(config_file=files if len(files) > 1 else files[0], workflow_type=workflow_type,
                              **override)
    workflow.initialize()
    # the bundle's logging.conf sets INFO on the root logger: the demo prints its own summary instead
    logging.getLogger().setLevel(logging.WARNING)
    return workflow


def tracking_uri(out: Path) -> str:
    """The demo keeps its MLflow runs beside its other output, so it never mixes with a user's own store."""
    return f"sqlite:///{(out / 'mlflow.db').resolve()}"


def run_bundle(bundle: str, dataset: Path, out: Path, overrides: dict) -> dict:
    """Train, evaluate and predict with one bundle; returns where things are and the Dice reached."""
    from ignite.engine import Events

    models, evals, preds = out / "models" / bundle, out / "eval" / bundle, out / "predictions" / bundle
    images = out / "inference_input" / bundle
    for folder in (models, evals, preds, images):
        shutil.rmtree(folder, ignore_errors=True)
    common = {"dataset_dir": str(dataset), "num_workers": 0, "spatial_size": overrides["spatial_size"],
              "tracking_uri": tracking_uri(out)}

    train = _workflow(bundle, ("train",), "train", output_dir=str(models), **{**common, **overrides})
    dice: list[float] = []
    evaluator = train.parser.get_parsed_content("validate#evaluator")
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: dice.append(e.state.metrics["val_mean_dice"]))
    started = time.perf_counter()
    train.run()
    train.finalize()
    print(f"  trained {len(dice)} epochs in {time.perf_counter() - started:.0f}s; validation Dice by epoch: "
          + ", ".join(f"{d:.3f}" for d in dice))

    ckpt = models / "model.pt"
    evaluate = _workflow(bundle, ("train", "evaluate"), "infer", output_dir=str(evals), ckpt_path=str(ckpt), **common)
    evaluate.run()
    evaluate.finalize()

    datalist = json.loads((dataset / "datalist.json").read_text())
    images.mkdir(parents=True)
    for item in (datalist["testing"] or datalist["validation"])[:N_PREDICT]:
        shutil.copy(dataset / item["image"], images)
    infer = _workflow(bundle, ("inference",), "infer", dataset_dir=str(images), output_dir=str(preds),
                      ckpt_path=str(ckpt), spatial_size=overrides["spatial_size"])
    infer.run()
    infer.finalize()
    return {"checkpoint": ckpt, "metrics": evals / "metrics.csv", "masks": preds, "best_dice": max(dice),
            "first_dice": dice[0]}


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = Path(args.out)
    folders = prepare(out, args.seed)
    for kind, folder in folders.items():
        datalist = json.loads((folder / "datalist.json").read_text())
        counts = ", ".join(f"{len(datalist[s])} {s}" for s in ("training", "validation", "testing"))
        print(f"{kind:12s} {folder / 'datalist.json'}: labels {datalist['labels']}; {counts}")

    results = {}
    for bundle, (kind, overrides) in DEMO_BUNDLES.items():
        overrides = dict(overrides)
        if args.epochs:
            overrides["max_epochs"] = args.epochs
        print(f"{bundle}: training on {folders[kind]} ({overrides['max_epochs']} epochs, "
              f"{overrides['spatial_size'][0]}x{overrides['spatial_size'][1]})")
        results[bundle] = run_bundle(bundle, folders[kind], out, overrides)

    print("\nresults")
    for bundle, r in results.items():
        print(f"  {bundle}: validation Dice {r['first_dice']:.3f} after epoch 1 -> best {r['best_dice']:.3f}")
        print(f"    checkpoint  {r['checkpoint']}")
        print(f"    metrics     {r['metrics']}")
        print(f"    masks       {r['masks']}/")
    print(f"  MLflow runs: mlflow ui --backend-store-uri {tracking_uri(out)}   or   "
          f"medseg compare --tracking-uri {tracking_uri(out)} --experiment isic_unet/isic")
    print(f"demo finished in {time.perf_counter() - started:.0f}s; everything is under {out}")
    return 0
