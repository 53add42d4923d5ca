"""k-fold cross-validation and fold ensembles.

Fold ``k`` trains on the datalist's training items whose ``fold`` is not ``k`` and validates on those whose ``fold`` is
``k`` (see ``data_prep/datalist.py``: training items carry ``fold`` 0..K-1). :func:`write_fold_datalist` writes that
split as a datalist of its own (absolute paths), which the bundle reads through ``--datalist``.

:func:`evaluate_models` scores models on the test split with MONAI's engines: each model alone
(``SupervisedEvaluator``) and their mean ensemble (``EnsembleEvaluator`` + ``MeanEnsembled`` over the softmax
probabilities), with the same post-processing and mean Dice (background excluded), so the numbers sit side by side.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.strategies.errors import StrategyError

TEST_METRIC = "mean_dice"


def _read(datalist: str | Path) -> dict:
    from medseg.data import DatalistError, read_datalist

    try:
        return read_datalist(Path(datalist))
    except DatalistError as error:
        raise StrategyError(str(error)) from None


def datalist_folds(datalist: str | Path) -> list[int]:
    """The folds of the training items (``fold`` >= 0), sorted."""
    return sorted({int(i["fold"]) for i in _read(datalist).get("training", []) if int(i.get("fold", -1)) >= 0})


def check_folds(datalist: str | Path, folds: Sequence[int] | None = None) -> list[int]:
    """The folds to train: ``folds`` checked against the datalist, or all of its folds.

    Raises:
        StrategyError: the datalist has fewer than two folds, or lacks a requested one.
    """
    available = datalist_folds(datalist)
    if len(available) < 2:
        raise StrategyError(
            f"{datalist}: its training items have {len(available)} fold(s) ({available}); k-fold needs at least two: "
            "convert the data with python -m data_prep ... --folds 3"
        )
    if not folds:
        return available
    unknown = sorted({int(f) for f in folds} - set(available))
    if unknown:
        raise StrategyError(f"{datalist}: has no fold {unknown} (its folds: {available}); choose --folds among them")
    return sorted({int(f) for f in folds})


def _absolute(item: dict, base: Path) -> dict:
    new = dict(item)
    for key in ("image", "label"):
        if isinstance(new.get(key), str) and not Path(new[key]).is_absolute():
            new[key] = str((base / new[key]).resolve())
    return new


def split_items(datalist: str | Path, section: str) -> list[dict]:
    """A section's items with absolute paths (empty list when absent)."""
    base = Path(datalist).resolve().parent
    return [_absolute(i, base) for i in _read(datalist).get(section, [])]


def write_fold_datalist(datalist: str | Path, fold: int, out: str | Path) -> Path:
    """Write the datalist of fold ``fold``: training = other folds, validation = this fold, testing unchanged.

    Args:
        datalist: the data_prep datalist.
        fold: the held-out fold.
        out: the file to write.

    Returns:
        ``out``.
    """
    data = _read(datalist)
    base = Path(datalist).resolve().parent
    training = [_absolute(i, base) for i in data.get("training", [])]
    fold_data = dict(data)
    fold_data["training"] = [i for i in training if int(i.get("fold", -1)) != fold]
    fold_data["validation"] = [i for i in training if int(i.get("fold", -1)) == fold]
    fold_data["testing"] = [_absolute(i, base) for i in data.get("testing", [])]
    fold_data["description"] = f"{data.get('description', '')} [fold {fold} held out for validation]".strip()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fold_data, indent=1))
    return out


def _postprocessing(pred_keys: list[str], num_classes: int, ensemble: bool, decision: Any = None) -> Any:
    """Softmax (sigmoid for one channel), the mean over ``pred_keys`` for an ensemble, the label map, then
    ``decision`` (a post-processing decision, see :mod:`medseg.postprocessing`) and one-hot for the Dice."""
    from monai.transforms import Activationsd, AsDiscreted, Compose, MeanEnsembled

    from medseg.postprocessing import ApplyPostprocessingd

    binary = num_classes == 1
    steps: list[Any] = [Activationsd(keys=pred_keys, softmax=not binary, sigmoid=binary)]
    if ensemble:
        steps.append(MeanEnsembled(keys=pred_keys, output_key="pred"))
    if binary:
        steps += [AsDiscreted(keys="pred", threshold=0.5), ApplyPostprocessingd("pred", decision)]
    else:
        steps += [AsDiscreted(keys="pred", argmax=True), ApplyPostprocessingd("pred", decision),
                  AsDiscreted(keys=["pred", "label"], to_onehot=num_classes)]
    return Compose(steps)


def _networks(parser: Any, checkpoints: dict[str, Path], bundle: str) -> dict[str, Any]:
    from medseg.bundle import BundleInputError, load_checkpoint_into

    device = parser.get_parsed_content("device")
    networks = {}
    for name, path in checkpoints.items():
        network = parser.get_parsed_content("network_def", lazy=False)
        try:
            networks[name] = load_checkpoint_into(network, path, bundle).to(device).eval()
        except BundleInputError as error:
            raise StrategyError(str(error)) from None
    return networks


def evaluate_models(
    parser: Any,
    checkpoints: dict[str, Path],
    items: list[dict],
    bundle: str = "",
    ensemble: bool = True,
    decisions: dict[str, Any] | None = None,
    label_maps: list[tuple[Any, Any]] | None = None,
) -> dict[str, float]:
    """Mean Dice of each model, and of their mean ensemble, on ``items``.

    Args:
        parser: the bundle's ``ConfigParser`` (``network_def``, ``device``, ``validate#preprocessing``,
            ``validate#inferer`` are used).
        checkpoints: model name -> checkpoint.
        items: the evaluation items (absolute paths, with labels).
        bundle: the bundle's name, for messages.
        ensemble: also score the mean ensemble (key ``ensemble``).
        decisions: model name (or ``ensemble``) -> the post-processing decision to apply to its label maps before
            scoring (a dict or a file; missing or None: none), so that each score is the shipped model's.
        label_maps: when a list, every single model's predicted and true label maps (``uint8`` ``(H, W)``, before
            any decision) are appended to it: the out-of-fold predictions a k-fold ensemble's post-processing is
            chosen on.

    Returns:
        model name -> mean Dice, plus ``ensemble``.
    """
    from ignite.engine import Events
    from monai.data import DataLoader, Dataset
    from monai.engines import EnsembleEvaluator, SupervisedEvaluator
    from monai.handlers import MeanDice, from_engine

    from medseg.postprocessing import index_map

    if not items:
        raise StrategyError("no items to evaluate on")
    decisions = decisions or {}
    device = parser.get_parsed_content("device")
    networks = _networks(parser, checkpoints, bundle)
    num_classes = int(parser.get_parsed_content("network_def#out_channels"))
    loader = DataLoader(Dataset(items, parser.get_parsed_content("validate#preprocessing")), batch_size=1)
    inferer = parser.get_parsed_content("validate#inferer") if "validate#inferer" in parser else None

    def metric() -> dict:
        return {
            TEST_METRIC: MeanDice(include_background=num_classes == 1, output_transform=from_engine(["pred", "label"]))
        }

    def keep_maps(engine) -> None:
        for case in engine.state.output:
            label_maps.append((index_map(case["pred"]), index_map(case["label"])))

    scores: dict[str, float] = {}
    for name, network in networks.items():
        evaluator = SupervisedEvaluator(
            device=device,
            val_data_loader=loader,
            network=network,
            inferer=inferer,
            postprocessing=_postprocessing(["pred"], num_classes, False, decisions.get(name)),
            key_val_metric=metric(),
        )
        if label_maps is not None:
            evaluator.add_event_handler(Events.ITERATION_COMPLETED, keep_maps)
        evaluator.run()
        scores[name] = float(evaluator.state.metrics[TEST_METRIC])
    if ensemble and len(networks) > 1:
        pred_keys = [f"pred_{name}" for name in networks]
        evaluator = EnsembleEvaluator(
            device=device,
            val_data_loader=loader,
            networks=list(networks.values()),
            pred_keys=pred_keys,
            inferer=inferer,
            postprocessing=_postprocessing(pred_keys, num_classes, True, decisions.get("ensemble")),
            key_val_metric=metric(),
        )
        evaluator.run()
        scores["ensemble"] = float(evaluator.state.metrics[TEST_METRIC])
    return scores


def choose_ensemble_postprocessing(parser: Any, label_maps: list[tuple[Any, Any]], out: str | Path) -> dict:
    """Choose the fold ensemble's post-processing on the folds' out-of-fold validation predictions, as nnU-Net
    does, and write it to ``out``.

    Each case was predicted by the fold model that did not train on it, so the pooled maps are a cross-validation
    of the whole training set. The bundle's ``postprocessing_metrics`` are the scores that must not drop.

    Returns:
        the decision (:func:`medseg.postprocessing.choose_postprocessing`).
    """
    from medseg.postprocessing import choose_postprocessing, write_decision

    metrics = parser.get_parsed_content("postprocessing_metrics") if "postprocessing_metrics" in parser else ["dice"]
    num_classes = max(int(parser.get_parsed_content("network_def#out_channels")), 2)
    predictions, labels = zip(*label_maps, strict=True)
    decision = choose_postprocessing(list(predictions), list(labels), num_classes, metrics=list(metrics))
    decision["cases"] = len(label_maps)
    write_decision(decision, out)
    return decision


def write_cv_fold(datalist: str | Path, fold: int, out: str | Path) -> Path:
    """A dataset folder for an honest cross-validation fold: testing = fold ``fold``, validation = the next fold
    (checkpoint selection, early stopping, the post-processing choice), training = the others.

    The held-out fold is scored once and never steers training, so the score estimates unseen cases. The folder gets
    ``datalist.json`` (absolute paths) and a copy of ``stats.json`` (the class frequencies a plan reads).

    Args:
        datalist: the data_prep datalist, its training items carrying ``fold``.
        fold: the scored fold.
        out: the folder to write.

    Returns:
        ``out``.

    Raises:
        StrategyError: fewer than three folds (one to score, one to validate, one to train on) or no fold ``fold``.
    """
    check_folds(datalist, [fold])
    available = datalist_folds(datalist)
    if len(available) < 3:
        raise StrategyError(
            f"{datalist}: cross-validation with a validation fold needs at least 3 folds, it has {len(available)}; "
            "convert with python -m data_prep ... --folds 5"
        )
    inner = available[(available.index(fold) + 1) % len(available)]
    data = _read(datalist)
    base = Path(datalist).resolve().parent
    items = [_absolute(i, base) for i in data.get("training", [])]
    data["training"] = [i for i in items if int(i["fold"]) not in (fold, inner)]
    data["validation"] = [i for i in items if int(i["fold"]) == inner]
    data["testing"] = [i for i in items if int(i["fold"]) == fold]
    data["description"] = f"{data.get('description', '')} [fold {fold} scored, fold {inner} validates]".strip()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "datalist.json").write_text(json.dumps(data, indent=1))
    stats = Path(datalist).parent / "stats.json"
    if stats.is_file():
        shutil.copy(stats, out / "stats.json")
    return out
