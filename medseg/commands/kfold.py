"""``medseg kfold``: k-fold cross-validation and the fold ensemble.

Trains one model per fold of the datalist's ``fold`` key (fold ``k`` validates on the training items of fold ``k``
and trains on the others), chooses the ensemble's post-processing on the pooled out-of-fold validation predictions
(``postprocessing.json`` beside ``kfold_summary.json``, as nnU-Net does), then scores on the test split both the best
single model (highest mean Dice on its own validation fold) and the mean ensemble of all fold models (MONAI
``EnsembleEvaluator`` + ``MeanEnsembled``), each with its post-processing, as ``medseg package`` ships them.
MLflow: one parent run, a child run per fold (its own validation and test Dice), and on the parent
``test_mean_dice_best_single``, ``test_mean_dice_ensemble``, ``best_fold`` and every fold's scores, side by side.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medseg.strategies.launch import add_common_arguments

    add_common_arguments(parser)
    parser.add_argument("--folds", type=int, nargs="+", help="folds to train (default: every fold of the datalist)")


def run(args: argparse.Namespace) -> int:
    from medseg.bundle.errors import BundleInputError
    from medseg.strategies.kfold import check_folds
    from medseg.strategies.launch import CommandSetup, check_ids

    try:
        setup = CommandSetup(args, "kfold")
        check_ids(setup.parser, ["network_def", "device", "validate#preprocessing", "output_dir"], str(setup.bundle))
        folds = check_folds(setup.datalist, args.folds)
        testing, test_split = _test_items(setup.datalist)
        print(f"test split: {test_split} ({len(testing)} labelled items)")
        summary = _train_and_score(setup, folds, testing, test_split)
    except BundleInputError as error:  # StrategyError, or a bad datalist met while running the bundle
        print(f"medseg kfold: {error}", file=sys.stderr)
        return 2
    width = max(len(k) for k in summary["test"])
    print(f"{'model':<{width}}  val_mean_dice  test_mean_dice")
    for name, test in summary["test"].items():
        val = summary["validation"].get(name)
        print(f"{name:<{width}}  {'' if val is None else f'{val:.4f}':>13}  {test:.4f}")
    print(
        f"best single model: {summary['best_fold']}; ensemble of {len(folds)} folds: "
        f"{summary['test'].get('ensemble', float('nan')):.4f}; summary: {summary['file']}"
    )
    return 0


def _test_items(datalist: str) -> tuple[list[dict], str]:
    """The labelled items of the test split; of the validation split (held out of every fold) when the test split
    has no labels (e.g. a challenge's unlabelled test set)."""
    from medseg.strategies import StrategyError
    from medseg.strategies.kfold import split_items

    for split in ("testing", "validation"):
        items = [i for i in split_items(datalist, split) if "label" in i]
        if items:
            return items, split
    raise StrategyError(
        f"{datalist}: neither its testing nor its validation items have labels; k-fold scores a held-out split: "
        "convert the data with a labelled test or validation share (python -m data_prep ... --test_ratio 0.2)"
    )


def _train_and_score(setup, folds: list[int], testing: list[dict], test_split: str) -> dict:
    from medseg.postprocessing import decision_beside, describe_decision
    from medseg.strategies.kfold import (
        choose_ensemble_postprocessing,
        evaluate_models,
        split_items,
        write_fold_datalist,
    )
    from medseg.strategies.progressive import best_checkpoint
    from medseg.strategies.runs import ParentRun
    from medseg.tracking import run_name

    params = {"bundle": setup.name, "folds": folds, "strategies": ",".join(setup.strategies) or "none"}
    tags = {"medseg.strategy": "kfold", "medseg.bundle": setup.name}
    checkpoints, validation, children = {}, {}, {}
    out_of_fold: list = []  # each fold model's label maps on its own validation fold
    with ParentRun(setup.experiment, run_name(setup.name, "kfold"), setup.tracking_uri, tags, params) as parent:
        for fold in folds:
            fold_dir = setup.out / f"fold{fold}"
            datalist = write_fold_datalist(setup.datalist, fold, fold_dir / "datalist.json")
            child_name, child_id = parent.child(f"fold{fold}", {"medseg.fold": fold}, {"fold": fold})
            children[f"fold{fold}"] = child_id
            print(f"fold {fold}: training -> {fold_dir}", flush=True)
            setup.run(
                {
                    "datalist": str(datalist),
                    "fold": fold,
                    "output_dir": str(fold_dir),
                    **parent.tracking_overrides(child_name),
                }
            )
            parent.end_child(child_id)
            checkpoints[f"fold{fold}"] = best_checkpoint(fold_dir)
            validation.update(
                evaluate_models(
                    setup.parser,
                    {f"fold{fold}": checkpoints[f"fold{fold}"]},
                    split_items(datalist, "validation"),
                    setup.name,
                    ensemble=False,
                    label_maps=out_of_fold,
                )
            )
        decision_path = setup.out / "postprocessing.json"
        decision = choose_ensemble_postprocessing(setup.parser, out_of_fold, decision_path)
        before, after = decision["scores"]["before"]["mean_dice"], decision["scores"]["after"]["mean_dice"]
        print(
            f"ensemble post-processing, chosen on {len(out_of_fold)} out-of-fold validation cases: "
            f"{describe_decision(decision)} (mean Dice {before:.4f} -> {after:.4f}); {decision_path}"
        )
        # every test score is the shipped model's: each fold with its own decision, the ensemble with the pooled one
        decisions = {name: decision_beside(path) for name, path in checkpoints.items()}
        decisions["ensemble"] = decision
        test = evaluate_models(setup.parser, checkpoints, testing, setup.name, ensemble=True, decisions=decisions)
        best_fold = max(validation, key=validation.get)
        for name, child_id in children.items():
            parent.log_metrics({"fold_val_mean_dice": validation[name], "test_mean_dice": test[name]}, child_id)
        metrics = {f"{name}_val_mean_dice": v for name, v in validation.items()}
        metrics.update({f"{name}_test_mean_dice": v for name, v in test.items() if name != "ensemble"})
        metrics.update({"test_mean_dice_best_single": test[best_fold], "test_mean_dice_ensemble": test["ensemble"]})
        metrics.update({"oof_mean_dice": before, "oof_mean_dice_postprocessed": after})
        parent.log_metrics(metrics)
        parent.log_artifact(str(decision_path))
        parent.log_params(
            {
                "best_fold": best_fold,
                "ensemble": "mean of softmax probabilities (MeanEnsembled)",
                "test_items": len(testing),
            }
        )
        summary = {
            "folds": folds,
            "best_fold": best_fold,
            "validation": validation,
            "test": test,
            "checkpoints": {k: str(v) for k, v in checkpoints.items()},
            "postprocessing": str(decision_path),
            "mlflow_parent_run": parent.run_id,
        }
        summary_file = setup.out / "kfold_summary.json"
        summary_file.write_text(json.dumps(summary, indent=1))
        parent.log_artifact(str(summary_file))
    summary["file"] = str(summary_file)
    return summary
