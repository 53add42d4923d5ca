"""Cross-validated accuracy of the bundles' default path on the real samples, beside the old defaults.

For each task this converts the sample in ``../shared/data`` with ``data_prep`` into K folds (all cases in the
cross-validation pool, grouped as the converter groups them), then for every recipe and fold:

1. writes the fold as a dataset folder of its own: testing = this fold, validation = the next fold (checkpoint
   selection, early stopping, post-processing choice), training = the other K-2 folds;
2. ``default`` recipe: ``medseg plan`` for the fold and the time budget, then trains the bundle with
   ``train.json`` + ``plans.json`` (one plan per fold, which the ``--candidate`` recipes share); ``v0.1``
   recipe: ``train.json`` + ``bundles/recipes/<bundle>_v0.1.json`` (the first release's settings) with the number
   of epochs the plan's timed steps say fit the budget (the plan itself sets twice that as an upper bound, see
   ``medseg.planning.planner.EPOCH_MARGIN``) and the same time limit, so both get the same training time;
3. evaluates the run's kept checkpoint (``model.pt``: the best validated epoch, or the last epoch with
   ``keep_checkpoint: last``) on the held-out (testing) fold through ``evaluate.json`` (the default path: TTA and the
   post-processing chosen on the training run's validation data, where the recipe has them); with
   ``--score_other_checkpoint`` also the other one (``model_final.pt``, or ``model_best.pt``), with the
   post-processing chosen on its own epoch;
4. reads per-class Dice, IoU and HD95 and the ISIC thresholded Jaccard from the report's ``summary.json``.

It prints mean and standard deviation over folds per recipe, side by side, and writes them as JSON.

Example (the figures in the README)::

    python benchmarks/bench_accuracy.py --task cardiac --folds 5 --time_budget 3m --out /tmp/acc
    python benchmarks/bench_accuracy.py --task isic --folds 3 --time_budget 5m --out /tmp/acc

``--candidate NAME=FILE`` adds a recipe under test (the default path with an override file after ``plans.json``),
e.g. the cardiac augmentation before 2026-12-04 against today's default::

    python benchmarks/bench_accuracy.py --task cardiac --recipes default --time_budget 6m --out /tmp/acc \
        --candidate flip_rotate=bundles/recipes/cardiac_flip_rotate_augmentation.json

``--bundle NAME`` trains another bundle on the task's data (e.g. ``isic_unet`` for ``--task isic``). ``--recipes nnunet
--nnunet_python PATH`` adds nnU-Net v2 (2D, planned by nnU-Net itself) trained for the same budget on the same folds
and scored by the same metrics (``nnunet_baseline.py`` says how, and how to install it in a venv of its own)::

    python benchmarks/bench_accuracy.py --task cardiac --recipes default nnunet --nnunet_python /tmp/nnunet/bin/python \
        --time_budget 15m --out /tmp/acc
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# task -> (bundle, converter, sample folder, converter extra args)
TASKS = {
    "cardiac": ("cardiac_unet", "cardiac-png", "cardiac_png_sample", []),
    "isic": ("isic_flexunet_resnet34", "isic", "isic2017_sample", ["--max-size", "512"]),
}
RECIPES = ("default", "v0.1")
BASELINES = ("nnunet",)  # other tools on the same folds and budget: not run unless asked for


def convert(task: str, folds: int, out: Path) -> Path:
    """The task's sample converted into ``folds`` folds, every case in the cross-validation pool."""
    from data_prep.__main__ import main as data_prep_main

    _, converter, sample, extra = TASKS[task]
    data = out / "data" / task
    if not (data / "datalist.json").is_file():
        code = data_prep_main([converter, "--src", str(SHARED / sample), "--out", str(data), "--folds", str(folds),
                               "--val-ratio", "0", "--test-ratio", "0", "--seed", "0", *extra])
        if code:
            raise SystemExit(f"bench: converting {SHARED / sample} failed")
    return data


def workflow(bundle: Path, files: list[str], kind: str, **override):
    from monai.bundle import ConfigWorkflow

    config = [str(bundle / "configs" / f) if not Path(f).is_absolute() else f for f in files]
    run = ConfigWorkflow(config_file=config, meta_file=str(bundle / "configs" / "metadata.json"),
                         workflow_type=kind, **override)
    run.initialize()
    run.run()
    run.finalize()
    return run


def plan_fold(task: str, fold_dir: Path, budget: str, min_steps: int | None = None,
              bundle_name: str | None = None) -> dict:
    """``medseg plan`` for one fold: made once per fold and shared by the default and the candidates, so that a
    recipe comparison is not also a comparison of training sizes (the timed steps behind the plan vary between
    calls, and flipped 192 px against 224 px between two recipes of the same fold)."""
    from medseg.bundle import find_bundle
    from medseg.planning import make_plan

    return make_plan(find_bundle(bundle_name or TASKS[task][0])[0], fold_dir, budget, min_steps=min_steps)


def train_and_score(task: str, recipe: str, fold_dir: Path, out: Path, budget: str, epochs: int | None,
                    tracking_uri: str, plan: dict | None = None, candidate: Path | None = None,
                    bundle_name: str | None = None, score_other_checkpoint: bool = False) -> dict[str, dict]:
    """Train one fold with one recipe, evaluate its kept checkpoint on the held-out fold; return the summaries.

    ``plan``: the fold's plan (:func:`plan_fold`), for the default path (the default recipe and candidates).
    ``candidate``: an override file layered after ``plans.json`` on the default path (a recipe under test).
    ``bundle_name``: another bundle for the task's data (default: the task's bundle in ``TASKS``).
    ``score_other_checkpoint``: also score the checkpoint the run did not keep as ``model.pt``, with the
    post-processing chosen on its own epoch: the last epoch (``model_final.pt``) as ``<recipe>@last_epoch``, or,
    where the run kept its last (``keep_checkpoint: last``), the best validated one as ``<recipe>@best_epoch``.
    """
    from medseg.bundle import find_bundle
    from medseg.bundle.checkpoint import KEPT_CHECKPOINT, OTHER_CHECKPOINT
    from medseg.planning import parse_duration, write_plan

    bundle = find_bundle(bundle_name or TASKS[task][0])[0]
    layers: list[str] = []
    if recipe == "default" or candidate is not None:
        if plan is None:
            raise ValueError(f"{recipe}: the default path needs the fold's plan (plan_fold)")
        layers.append(str(write_plan(plan, out / "plans.json")))
        layers += [str(candidate)] if candidate is not None else []
        # the epochs come from plans.json alone, so that a candidate's own max_epochs wins over the plan's
        planned_epochs, limits = plan["max_epochs"], {}
        print(f"{task} {fold_dir.parent.name}: plan trains at {plan['spatial_size']}", flush=True)
    else:  # the same epochs and the same wall-time limit as the default recipe got
        layers.append(str(REPO_ROOT / "bundles" / "recipes" / f"{bundle.name}_{recipe}.json"))
        planned_epochs = epochs
        limits = {"max_epochs": epochs, "time_limit": parse_duration(budget)} if epochs else {}
    common = {"dataset_dir": str(fold_dir), "tracking_uri": tracking_uri}
    started = time.perf_counter()
    workflow(bundle, ["train.json", *layers], "train", output_dir=str(out / "train"), **common, **limits)
    seconds = time.perf_counter() - started
    as_released = {"postprocessing_decision": None} if recipe == "v0.1" else {}  # v0.1 had no post-processing
    summaries = {}
    checkpoints = [(KEPT_CHECKPOINT, recipe, "eval")]
    if score_other_checkpoint:  # whichever of the two the run did not keep as model.pt
        checkpoints += [(f, f"{recipe}@{epoch}_epoch", f"eval_{epoch}_epoch") for epoch, f in OTHER_CHECKPOINT.items()
                        if (out / "train" / f).is_file()]
    for checkpoint, label, folder in checkpoints:
        evaluation = out / folder
        workflow(bundle, ["train.json", *layers, "evaluate.json"], "infer", output_dir=str(evaluation),
                 ckpt_path=str(out / "train" / checkpoint), evaluate_section="testing", **common, **as_released)
        summary = json.loads((evaluation / "report" / "summary.json").read_text())
        summary["train_seconds"] = seconds
        summary["epochs"] = planned_epochs
        summaries[label] = summary
    return summaries


def aggregate(summaries: list[dict]) -> dict:
    """Mean and sd over folds of each foreground class's dice/iou/hd95 and of the set metrics."""

    def stat(values):
        values = [v for v in values if v is not None]
        if not values:
            return None
        return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}

    first = summaries[0]
    classes = [name for c, name in sorted(first["labels"].items(), key=lambda kv: int(kv[0])) if int(c) > 0]
    out = {"per_class": {}, "metrics": {}, "folds": len(summaries)}
    for name in classes:
        out["per_class"][name] = {m: stat([s["per_class"][name].get(m) for s in summaries]) for m in
                                  ("dice", "iou", "hd95")}
    for key in ("mean_dice", "mean_iou", "thresholded_jaccard", "jaccard", "mean_hd95"):
        if key in first["metrics"]:
            out["metrics"][key] = stat([s["metrics"].get(key) for s in summaries])
    out["train_minutes"] = stat([s["train_seconds"] / 60 for s in summaries])
    return out


def show(task: str, results: dict[str, dict]) -> None:
    def cell(v):
        return "n/a" if v is None else f"{v['mean']:.3f} ± {v['sd']:.3f}"

    print(f"\n{task}: mean ± sd over {next(iter(results.values()))['folds']} folds")
    rows = []
    first = next(iter(results.values()))
    for name in first["per_class"]:
        for metric in ("dice", "iou", "hd95"):
            rows.append((f"{name} {metric}", [r["per_class"][name][metric] for r in results.values()]))
    for key in first["metrics"]:
        rows.append((key, [r["metrics"][key] for r in results.values()]))
    rows.append(("training minutes per fold", [r["train_minutes"] for r in results.values()]))
    print("| | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
    for label, values in rows:
        print(f"| {label} | " + " | ".join(cell(v) for v in values) + " |")


def show_folds(per_recipe: dict[str, list[dict]]) -> None:
    """Per fold, each recipe's mean Dice (and thresholded Jaccard where reported): the paired comparison."""
    for recipe, summaries in per_recipe.items():
        for key in ("mean_dice", "thresholded_jaccard"):
            values = [s["metrics"].get(key) for s in summaries]
            if summaries and None not in values:
                print(f"{recipe} {key} per fold: " + ", ".join(f"{v:.3f}" for v in values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=[*TASKS, "all"], default="all")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only_folds", type=int, nargs="*", help="run these folds only (default: all)")
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=[*RECIPES, *BASELINES],
                        help="nnunet: nnU-Net v2 2D planned by itself, trained for the same budget "
                             "(needs --nnunet_python; see nnunet_baseline.py)")
    parser.add_argument("--nnunet_python", type=Path,
                        help="the python of a venv with nnunetv2 installed (its nnUNetv2_* commands beside it)")
    parser.add_argument("--nnunet_iterations", type=int,
                        help="nnU-Net iterations per epoch (default: nnU-Net's 250; fewer only to check the pipeline)")
    parser.add_argument("--time_budget", default="15m", help="training time per fold for the default recipe")
    parser.add_argument("--min_steps", type=int,
                        help="the plan's --min_steps for the default recipe (default: medseg plan's; 0: full size)")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=FILE",
                        help="also run the default path with FILE (an override file) layered after plans.json, "
                             "reported as recipe NAME; repeatable")
    parser.add_argument("--bundle", help="with one --task: train this bundle instead of the task's "
                                         f"({', '.join(f'{t}: {b[0]}' for t, b in TASKS.items())})")
    parser.add_argument("--score_other_checkpoint", action="store_true",
                        help="also score each run's other checkpoint (its last epoch, model_final.pt, as "
                             "RECIPE@last_epoch; with keep_checkpoint last, its best epoch as RECIPE@best_epoch): "
                             "the two checkpoints of the same runs side by side")
    parser.add_argument("--out", required=True)
    parser.add_argument("--json", help="write the aggregated results here")
    args = parser.parse_args(argv)
    candidates = {}
    for spec in args.candidate:
        name, _, file = spec.partition("=")
        if not name or not Path(file).is_file() or name in RECIPES:
            parser.error(f"--candidate {spec}: give NAME=FILE with a new name and an existing override file")
        candidates[name] = Path(file).resolve()
    if "nnunet" in args.recipes and not (args.nnunet_python and
                                          (args.nnunet_python.parent / "nnUNetv2_plan_and_preprocess").is_file()):
        parser.error("--recipes nnunet needs --nnunet_python PATH, a venv's python with nnunetv2 installed "
                     "(see benchmarks/nnunet_baseline.py)")
    if args.bundle and args.task == "all":
        parser.error("--bundle needs one --task: it replaces that task's bundle")
    from nnunet_baseline import nnunet_fold

    from medseg.planning import parse_duration
    from medseg.planning.planner import EPOCH_MARGIN
    from medseg.strategies.kfold import write_cv_fold
    if not SHARED.is_dir():
        print(f"bench: {SHARED} not found (set MEDSEG_SHARED_DATA)", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    tracking_uri = f"sqlite:///{out / 'mlflow.db'}"
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for task in TASKS if args.task == "all" else [args.task]:
        data = convert(task, args.folds, out)
        recipes = [*args.recipes, *candidates]
        per_recipe: dict[str, list[dict]] = {r: [] for r in recipes}  # and RECIPE@last_epoch / @best_epoch as they come
        for fold in args.only_folds or range(args.folds):
            fold_dir = write_cv_fold(data / "datalist.json", fold, out / task / f"fold{fold}" / "data")
            epochs = None
            plan = None  # one plan per fold, made when the first recipe of the default path needs it
            for recipe in recipes:  # default first: the old recipe gets the same number of epochs
                run_dir = out / task / f"fold{fold}" / recipe
                if plan is None and (recipe == "default" or recipe in candidates):
                    plan = plan_fold(task, fold_dir, args.time_budget, args.min_steps, args.bundle)
                if recipe == "nnunet":
                    scored = {recipe: nnunet_fold(fold_dir, run_dir, parse_duration(args.time_budget),
                                                  args.nnunet_python.absolute(), args.nnunet_iterations)}
                else:
                    scored = train_and_score(task, recipe, fold_dir, run_dir, args.time_budget, epochs, tracking_uri,
                                             plan, candidates.get(recipe), args.bundle, args.score_other_checkpoint)
                if recipe == "default":
                    epochs = scored[recipe]["epochs"] // EPOCH_MARGIN  # what fits: v0.1's epochs
                fit = f" (the plan says {epochs} epochs fit)" if epochs else ""
                for label, summary in scored.items():
                    per_recipe.setdefault(label, []).append(summary)
                    print(f"{task} fold {fold} {label}: mean Dice {summary['metrics'].get('mean_dice')} in "
                          f"{summary['train_seconds'] / 60:.1f} min{fit}", flush=True)
        report[task] = {recipe: aggregate(s) for recipe, s in per_recipe.items() if s}
        show(task, report[task])
        show_folds(per_recipe)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
