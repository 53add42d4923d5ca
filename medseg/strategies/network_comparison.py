"""Networks side by side under one recipe: the same data, cross-validation folds, time budget and seed.

For every fold ``k`` (:func:`medseg.strategies.kfold.write_cv_fold`: fold ``k`` is scored, fold ``k+1`` validates,
the rest trains) and every registered network (:data:`medseg.networks.NETWORKS`), the bundle's ``train.json`` plus
the network's override file (:func:`medseg.networks.variant_files`) trains for the whole time budget (no early
stopping; the learning-rate schedule spans it: :class:`medseg.strategies.schedules.BudgetCosineLR`), then
``evaluate.json`` scores the best checkpoint on the scored fold with the bundle's default inference (TTA, the
post-processing chosen on validation).

MLflow: one parent run; per network and fold a training child and an evaluation child. The parent holds the
comparison (``comparison.md``/``.csv``/``.json`` and ``comparison.png``) and per network ``cv/<network>/mean_dice``
and friends. The table gives mean and standard deviation over folds of the foreground classes' Dice (and their
mean), HD95, parameters, training minutes, epochs and evaluation seconds per image.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.strategies.errors import StrategyError

#: an epoch cap far beyond any budget: the time budget ends training and the schedule spans it
EPOCH_CAP = 10_000


@dataclass
class FoldScore:
    """One network trained on one fold and scored on its held-out cases."""

    network: str
    fold: int
    summary: dict
    train_seconds: float
    eval_seconds_per_image: float
    epochs: int | None
    parameters: int | None


@dataclass
class Comparison:
    """Every fold score and the files written."""

    scores: list[FoldScore] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    parent_run_id: str | None = None

    def by_network(self) -> dict[str, list[FoldScore]]:
        out: dict[str, list[FoldScore]] = {}
        for score in self.scores:
            out.setdefault(score.network, []).append(score)
        return out


def check_networks(names: list[str]) -> list[str]:
    """The names, each registered, without repeats.

    Raises:
        StrategyError: an unknown name (the message lists the registered ones) or fewer than one name.
    """
    from medseg.networks import UnknownNetworkError, get_network

    unique = list(dict.fromkeys(names))
    if not unique:
        raise StrategyError("no --networks given, e.g. --networks unet unet3plus deeplabv3 coursework_unet")
    for name in unique:
        try:
            get_network(name)
        except UnknownNetworkError as error:
            raise StrategyError(str(error)) from None
    return unique


def _stat(values: list[float | None]) -> dict[str, float] | None:
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return {"mean": statistics.mean(present), "sd": statistics.stdev(present) if len(present) > 1 else 0.0,
            "n": len(present)}


def aggregate(scores: list[FoldScore]) -> dict[str, Any]:
    """Mean and sd over folds: mean foreground Dice, per class Dice and HD95, time, parameters."""
    first = scores[0].summary
    classes = [name for c, name in sorted(first["labels"].items(), key=lambda kv: int(kv[0])) if int(c) > 0]
    row: dict[str, Any] = {
        "folds": len(scores),
        "mean_dice": _stat([s.summary["metrics"].get("mean_dice") for s in scores]),
        "mean_hd95": _stat([s.summary["metrics"].get("mean_hd95") for s in scores]),
        "dice": {c: _stat([s.summary["per_class"].get(c, {}).get("dice") for s in scores]) for c in classes},
        "hd95": {c: _stat([s.summary["per_class"].get(c, {}).get("hd95") for s in scores]) for c in classes},
        "train_minutes": _stat([s.train_seconds / 60 for s in scores]),
        "epochs": _stat([s.epochs for s in scores]),
        "eval_seconds_per_image": _stat([s.eval_seconds_per_image for s in scores]),
        "parameters": scores[0].parameters,
    }
    if "thresholded_jaccard" in first["metrics"]:
        row["thresholded_jaccard"] = _stat([s.summary["metrics"].get("thresholded_jaccard") for s in scores])
    return row


def table_markdown(rows: dict[str, dict[str, Any]]) -> str:
    """The comparison as a Markdown table, best mean Dice first."""

    def cell(value: dict | None, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value['mean']:.{digits}f} ± {value['sd']:.{digits}f}"

    ordered = sorted(rows.items(), key=lambda kv: -(kv[1]["mean_dice"] or {"mean": -1})["mean"])
    classes = list(next(iter(rows.values()))["dice"])
    extra = ["thresholded Jaccard"] if any("thresholded_jaccard" in r for r in rows.values()) else []
    header = ["network", "folds", "mean fg Dice", *(f"{c} Dice" for c in classes), *extra, "mean HD95 (px)",
              "parameters (M)", "training min", "epochs", "eval s/image"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in ordered:
        values = [name, str(row["folds"]), cell(row["mean_dice"]), *(cell(row["dice"][c]) for c in classes)]
        if extra:
            values.append(cell(row.get("thresholded_jaccard")))
        params = f"{row['parameters'] / 1e6:.2f}" if row["parameters"] else "n/a"
        values += [cell(row["mean_hd95"], 1), params, cell(row["train_minutes"], 1), cell(row["epochs"], 0),
                   cell(row["eval_seconds_per_image"], 3)]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(rows: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """``comparison.md``, ``comparison.csv``, ``comparison.json`` and ``comparison.png`` (Dice per class, mean ± sd
    over folds, one bar group per network) in ``out``."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = [out / "comparison.md", out / "comparison.csv", out / "comparison.json", out / "comparison.png"]
    files[0].write_text(table_markdown(rows))
    classes = list(next(iter(rows.values()))["dice"])
    with open(files[1], "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["network", "folds", "parameters", "mean_dice", "mean_dice_sd",
                         *(f"{c}_dice{s}" for c in classes for s in ("", "_sd")), "train_minutes", "eval_s_per_image"])
        for name, row in rows.items():
            pair = [row["mean_dice"]["mean"], row["mean_dice"]["sd"]] if row["mean_dice"] else ["", ""]
            per_class = [(row["dice"][c] or {}).get(k) for c in classes for k in ("mean", "sd")]
            timing = [(row[k] or {}).get("mean") for k in ("train_minutes", "eval_seconds_per_image")]
            writer.writerow([name, row["folds"], row["parameters"], *pair, *per_class, *timing])
    files[2].write_text(json.dumps(rows, indent=2) + "\n")

    groups = ["mean", *classes]
    width = 0.8 / len(rows)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) + 2), 4))
    for index, (name, row) in enumerate(rows.items()):
        stats = [row["mean_dice"], *(row["dice"][c] for c in classes)]
        means = [s["mean"] if s else 0.0 for s in stats]
        sds = [s["sd"] if s else 0.0 for s in stats]
        positions = [g + (index - (len(rows) - 1) / 2) * width for g in range(len(groups))]
        axis.bar(positions, means, width, yerr=sds, capsize=3, label=name)
    axis.set_xticks(range(len(groups)), groups)
    axis.set_ylabel("Dice on held-out folds (mean ± sd)")
    axis.set_ylim(0, 1)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(files[3], dpi=120)
    plt.close(figure)
    return files


def _from_run(parent: Any, run_id: str) -> tuple[int | None, int | None]:
    """``(epochs, parameters)`` of a training child: the steps of its ``train/loss`` curve and the
    ``network.parameters`` param its bundle logged."""
    from medseg.tracking.engines import TRAIN_LOSS

    try:
        epochs = len(parent.client.get_metric_history(run_id, TRAIN_LOSS)) or None
        parameters = parent.client.get_run(run_id).data.params.get("network.parameters")
    except Exception:  # tracking fell back or failed: the table shows n/a rather than stopping the comparison
        return None, None
    return epochs, int(parameters) if parameters else None


def compare_networks(
    setup: Any, networks: list[str], time_budget: str, folds: list[int] | None = None
) -> Comparison:
    """Train and score every network on every cross-validation fold; write and log the comparison.

    Args:
        setup: the command's resolved options (:class:`medseg.strategies.launch.CommandSetup`): the bundle whose recipe
            (data, augmentation, loss, optimiser, inference) every network shares, its datalist (training items
            carrying ``fold``), ``--strategy``/``--set``/``--seed`` for every run, the output folder, MLflow.
        networks: registered network names.
        time_budget: training wall time per network and fold (``3m``, ``90s``).
        folds: the scored folds (default: all).

    Returns:
        the fold scores and the comparison files.

    Raises:
        StrategyError: an unknown network, fewer than three folds, a budget that cannot be read.
    """
    from medseg.networks import variant_files
    from medseg.planning import PlanError, parse_duration
    from medseg.strategies.kfold import check_folds, write_cv_fold
    from medseg.strategies.runs import ParentRun
    from medseg.tracking import run_name

    networks = check_networks(networks)
    folds = check_folds(setup.datalist, folds)
    try:
        seconds = parse_duration(time_budget)
    except PlanError as error:
        raise StrategyError(str(error)) from None
    bundle, out = setup.bundle, setup.out
    evaluate_json = str(bundle / "configs" / "evaluate.json")
    layers = {name: variant_files(name, bundle / "configs" / "train.json")[1:] for name in networks}
    # every network trains for the whole budget: early stopping (a patience tuned for one network) would end a
    # slow starter early and turn a comparison at equal time into one at unequal time
    budget = {"max_epochs": EPOCH_CAP, "time_limit": seconds}
    if "early_stop_patience" in setup.parser:
        budget["early_stop_patience"] = EPOCH_CAP
    for fold in folds:  # fewer than three folds fails here, before any training
        write_cv_fold(setup.datalist, fold, out / "folds" / f"fold{fold}")
    result = Comparison()
    params = {"bundle": setup.name, "networks": ",".join(networks), "folds": ",".join(map(str, folds)),
              "time_budget_s": seconds, "seed": setup.overrides.get("seed"), "datalist": setup.datalist,
              "strategies": ",".join(setup.strategies) or "none"}
    tags = {"medseg.strategy": "compare-networks", "medseg.bundle": setup.name}
    with ParentRun(setup.experiment, run_name(setup.name, "compare-networks"), setup.tracking_uri, tags,
                   params) as parent:
        result.parent_run_id = parent.run_id
        for fold in folds:
            fold_dir = out / "folds" / f"fold{fold}"
            n_test = len(json.loads((fold_dir / "datalist.json").read_text())["testing"])
            for name in networks:
                run_dir, label = out / "runs" / f"{name}-fold{fold}", f"{name}-fold{fold}"
                print(f"compare-networks: {label}: training for {seconds / 60:.1f} min", flush=True)
                # "compare.*": the bundle logs its own "network" param (the class name)
                child, child_id = parent.child(label, {"medseg.network": name, "medseg.fold": fold},
                                               {"compare.network": name, "compare.fold": fold})
                started = time.perf_counter()
                setup.run({"dataset_dir": str(fold_dir), "output_dir": str(run_dir / "train"), **budget,
                           **parent.tracking_overrides(child)}, layers[name])
                train_seconds = time.perf_counter() - started
                parent.end_child(child_id)
                test_child, test_id = parent.child(f"{label}-test", {"medseg.network": name, "medseg.fold": fold},
                                                   {"compare.network": name, "compare.fold": fold})
                started = time.perf_counter()
                setup.run({"dataset_dir": str(fold_dir), "output_dir": str(run_dir / "eval"),
                           "evaluate_section": "testing", "ckpt_path": str(run_dir / "train" / "model.pt"),
                           **parent.tracking_overrides(test_child)}, [*layers[name], evaluate_json])
                eval_seconds = time.perf_counter() - started
                parent.end_child(test_id)
                summary = json.loads((run_dir / "eval" / "report" / "summary.json").read_text())
                epochs, parameters = _from_run(parent, child_id)
                result.scores.append(FoldScore(name, fold, summary, train_seconds, eval_seconds / max(n_test, 1),
                                               epochs, parameters))
                parent.log_metrics({"test/mean_dice": summary["metrics"].get("mean_dice"),
                                    "train_minutes": train_seconds / 60}, run_id=child_id)
                print(f"compare-networks: {label}: mean Dice {summary['metrics'].get('mean_dice'):.3f} on fold "
                      f"{fold}, {train_seconds / 60:.1f} min", flush=True)
        rows = {name: aggregate(scores) for name, scores in result.by_network().items()}
        result.files = write_outputs(rows, out)
        for path in result.files:
            parent.log_artifact(str(path), "comparison")
        parent.log_metrics({f"cv/{name}/{key}": row[key]["mean"] for name, row in rows.items()
                            for key in ("mean_dice", "thresholded_jaccard", "train_minutes") if row.get(key)})
    return result
