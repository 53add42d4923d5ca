"""Where the cross-validated ISIC models' errors come from: the decision threshold, the training seed, or the model.

``bench_accuracy.py`` leaves each trained fold in ``<out>/isic/fold<k>/<recipe>/`` (``plans.json``, ``train/model.pt``)
beside the fold's dataset (``<out>/isic/fold<k>/data``). For each such run this script computes the lesion
probabilities of the kept checkpoint on the fold's validation and testing sections, through the bundle's own
``evaluate.json`` (test-time augmentation, whole image, no post-processing yet), and reports the ISIC thresholded
Jaccard on the testing section per fold:

- ``0.5``: the bundle's path (argmax, i.e. probability > 0.5, then the post-processing chosen on validation);
- ``threshold chosen on validation``: the same with the lesion threshold that scores best on the validation section
  (grid 0.20-0.60, thresholded Jaccard then mean Jaccard; ties go to the threshold nearest 0.5), the post-processing
  chosen again for it: what calibrating the threshold would give;
- ``best threshold on the test fold``: the most any single threshold could give (an oracle, not a recipe);
- ``ensemble``: the mean probability of all the named runs of the fold (different seeds or recipes), threshold 0.5:
  what averaging models would give, i.e. how much of the error is variance between trainings.

and lists the testing cases under the challenge's 0.65 Jaccard cut-off, with the lesion's share of the image, the
predicted share and the mean probability inside and outside the true lesion (a faint lesion has a low mean
probability inside; a false region has a high one outside).

Example (the figures in benchmarks/README.md)::

    python benchmarks/isic_error_analysis.py --cache /tmp/errors \
        --runs default /tmp/acco/isic/fold[01]/off /tmp/acct/isic/fold[234]/default \
        --runs percentile /tmp/accp/isic/fold*/percentile --runs ema /tmp/acce/isic/fold*/ema
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = "isic_flexunet_resnet34"
SECTIONS = ("validation", "testing")
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
CUT_OFF = 0.65  # the ISIC 2018 challenge's Jaccard threshold


def lesion_probabilities(run_dir: Path, section: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Lesion probability maps and true label maps of one fold section, as ``evaluate.json`` predicts them."""
    import tempfile

    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    from medseg.bundle import find_bundle

    bundle = find_bundle(BUNDLE)[0]
    configs = [bundle / "configs" / "train.json", run_dir / "plans.json", bundle / "configs" / "evaluate.json"]
    probabilities, labels = [], []
    with tempfile.TemporaryDirectory() as scratch:
        workflow = ConfigWorkflow(
            config_file=[str(c) for c in configs], meta_file=str(bundle / "configs" / "metadata.json"),
            workflow_type="infer", output_dir=scratch, ckpt_path=str(run_dir / "train" / "model.pt"),
            evaluate_section=section, dataset_dir=str(run_dir.parent / "data"),
            tracking_uri=f"sqlite:///{scratch}/mlflow.db", postprocessing_decision=None,
        )
        workflow.initialize()

        def keep(engine) -> None:
            for item in engine.state.output:  # "logits" is the TTA output, copied before softmax and argmax
                probabilities.append(torch.softmax(item["logits"].float(), 0)[1].cpu().numpy().astype(np.float16))
                labels.append(item["label_index"][0].cpu().numpy().astype(np.uint8))

        workflow.parser.get_parsed_content("validate#evaluator").add_event_handler(Events.ITERATION_COMPLETED, keep)
        workflow.run()
        workflow.finalize()
    return probabilities, labels


def load_run(run_dir: Path, cache: Path | None) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """Both sections of one run, from ``cache`` when it was computed before."""
    cached = cache / (re.sub(r"[^\w.-]+", "_", str(run_dir.resolve()).strip("/")) + ".npz") if cache else None
    if cached is not None and cached.is_file():
        stored = np.load(cached)
        return {s: ([stored[f"{s}_p_{i}"] for i in range(int(stored[f"{s}_n"]))],
                    [stored[f"{s}_l_{i}"] for i in range(int(stored[f"{s}_n"]))]) for s in SECTIONS}
    run = {s: lesion_probabilities(run_dir, s) for s in SECTIONS}
    if cached is not None:
        cache.mkdir(parents=True, exist_ok=True)
        arrays = {f"{s}_n": np.array(len(run[s][0])) for s in SECTIONS}
        for s, (probabilities, labels) in run.items():
            arrays.update({f"{s}_p_{i}": p for i, p in enumerate(probabilities)})
            arrays.update({f"{s}_l_{i}": lab for i, lab in enumerate(labels)})
        np.savez_compressed(cached, **arrays)
    return run


def scores(predictions: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    from medseg.metrics import isic_jaccard, threshold_jaccard

    jaccards = [isic_jaccard(p, g) for p, g in zip(predictions, labels, strict=True)]
    return {"thresholded_jaccard": float(np.mean([threshold_jaccard(j, CUT_OFF) for j in jaccards])),
            "jaccard": float(np.mean(jaccards))}


def at_threshold(run: dict, threshold: float) -> dict[str, dict[str, float]]:
    """Validation and testing scores with lesion = probability > ``threshold``, post-processing chosen on validation."""
    from medseg.postprocessing import apply_postprocessing, choose_postprocessing

    masks = {s: [(p.astype(np.float32) > threshold).astype(np.uint8) for p in run[s][0]] for s in SECTIONS}
    decision = choose_postprocessing(masks["validation"], run["validation"][1], 2,
                                     metrics=("dice", "thresholded_jaccard"))
    return {s: scores([apply_postprocessing(m, decision) for m in masks[s]], run[s][1]) for s in SECTIONS}


def threshold_study(run: dict) -> dict[str, float]:
    """Testing thresholded Jaccard at 0.5, at the threshold chosen on validation, and at the best one for testing."""
    by_threshold = {t: at_threshold(run, t) for t in THRESHOLDS}

    def validation_rank(t: float) -> tuple:
        validation = by_threshold[t]["validation"]
        return validation["thresholded_jaccard"], validation["jaccard"], -abs(t - 0.5)

    chosen = max(THRESHOLDS, key=validation_rank)
    return {"0.5": by_threshold[0.5]["testing"]["thresholded_jaccard"],
            "chosen": by_threshold[chosen]["testing"]["thresholded_jaccard"], "chosen_threshold": chosen,
            "oracle": max(by_threshold[t]["testing"]["thresholded_jaccard"] for t in THRESHOLDS)}


def ensemble(runs: list[dict]) -> dict:
    """The mean lesion probability of runs of one fold, on the label grid of the finest run (runs trained at
    different sizes validate on different grids)."""
    from skimage.transform import resize

    finest = max(runs, key=lambda r: r["testing"][1][0].size)
    return {s: ([np.mean([resize(r[s][0][i].astype(np.float32), finest[s][1][i].shape, order=1) for r in runs], 0)
                 for i in range(len(finest[s][1]))], finest[s][1]) for s in SECTIONS}


def failures(run: dict) -> list[str]:
    """One line per testing case under the cut-off, at 0.5 without post-processing."""
    from medseg.metrics import isic_jaccard

    lines = []
    for probability, label in zip(*run["testing"], strict=True):
        probability = probability.astype(np.float32)
        jaccard = isic_jaccard((probability > 0.5).astype(np.uint8), label)
        if jaccard < CUT_OFF:
            inside = probability[label > 0].mean() if label.any() else float("nan")
            lines.append(f"Jaccard {jaccard:.2f}  lesion {label.mean():.0%} of the image, predicted "
                         f"{(probability > 0.5).mean():.0%}  mean probability inside {inside:.2f}, "
                         f"outside {probability[label == 0].mean():.2f}")
    return lines


def fold_of(run_dir: Path) -> int:
    match = re.fullmatch(r"fold(\d+)", run_dir.parent.name)
    needed = [run_dir / "plans.json", run_dir / "train" / "model.pt", run_dir.parent / "data" / "datalist.json"]
    if match is None or not all(path.is_file() for path in needed):
        raise SystemExit(f"{run_dir}: not a bench_accuracy.py run folder (<out>/isic/fold<k>/<recipe> with plans.json "
                         "and train/model.pt, the fold's data/ beside it); pass the recipe folders of a finished run")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", action="append", required=True, metavar=("NAME", "RUN_DIR"),
                        help="a recipe name and its runs' folders <out>/isic/fold<k>/<recipe> (repeatable)")
    parser.add_argument("--cache", type=Path, help="keep the probabilities here and reuse them (keyed by the run "
                                                   "folder: empty it after training into the same --out again)")
    parser.add_argument("--cases", action="store_true", help="list each fold's testing cases under the cut-off")
    args = parser.parse_args(argv)

    runs: dict[str, dict[int, dict]] = defaultdict(dict)
    for name, *folders in args.runs:
        if not folders:
            parser.error(f"--runs {name}: name the run folders too")
        for folder in map(Path, folders):
            fold = fold_of(folder)  # checked before any work
            runs[name][fold] = load_run(folder, args.cache)

    print("ISIC thresholded Jaccard on each testing fold")
    for name, by_fold in runs.items():
        folds = sorted(by_fold)
        study = {k: threshold_study(by_fold[k]) for k in folds}
        print(f"{name} (folds {', '.join(map(str, folds))})")
        for key, label in (("0.5", "0.5, as the bundle"), ("chosen", "threshold chosen on validation"),
                           ("oracle", "best threshold on the test fold")):
            values = [study[k][key] for k in folds]
            print(f"  {label:34s} {' / '.join(f'{v:.3f}' for v in values)}  mean {np.mean(values):.3f}")
        print(f"  {'thresholds chosen':34s} {' / '.join(str(study[k]['chosen_threshold']) for k in folds)}")
        if args.cases:
            for k in folds:
                print(f"  fold {k}:" + "".join(f"\n    {line}" for line in failures(by_fold[k])))
    common = sorted(set.intersection(*(set(by_fold) for by_fold in runs.values())))
    if len(runs) > 1 and common:
        averaged = [ensemble([by_fold[k] for by_fold in runs.values()]) for k in common]
        values = [at_threshold(run, 0.5)["testing"]["thresholded_jaccard"] for run in averaged]
        print(f"ensemble of {' + '.join(runs)} (folds {', '.join(map(str, common))}): "
              f"{' / '.join(f'{v:.3f}' for v in values)}  mean {np.mean(values):.3f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    raise SystemExit(main())
