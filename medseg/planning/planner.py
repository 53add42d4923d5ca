"""From a fingerprint and a few timed steps to a bundle's override file, each choice with its reason."""

from __future__ import annotations

import math
import re
import statistics
import time
from pathlib import Path
from typing import Any

from medseg.bundle.errors import BundleInputError
from medseg.planning.fingerprint import datalist_digest, fingerprint

PLAN_VERSION = 1
TIMED_STEPS = 5  # training steps timed (their median) after WARM_UP_STEPS
WARM_UP_STEPS = 2  # allocations, kernel selection, the optimiser's state: the first steps run slower
#: planned epochs per epoch the timed steps say fit (see make_plan)
EPOCH_MARGIN = 2
VAL_COST = 0.35  # one validation image costs about this fraction of one training image (forward only)
IMBALANCE = 0.01  # a foreground class rarer than this fraction of training pixels gets class weights
#: optimiser steps the budget should buy; where it buys fewer at the bundle's size, the training size shrinks down
#: to the bundle's ``min_spatial_scale`` of it (0.5 for dermoscopy; 1.0, no shrinking, for cardiac, whose thin
#: myocardium needs every pixel of its 96 x 96 slices)
MIN_STEPS = 500


class PlanError(BundleInputError):
    """A plan cannot be made or does not fit the run (one line naming the input and the fix)."""


def parse_duration(text: str | float | int) -> float:
    """``"15m"``, ``"90s"``, ``"1h30m"`` or seconds as a number -> seconds.

    Raises:
        PlanError: not a positive duration.
    """
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", str(text))
        if not parts or not any(parts.groups()):
            raise PlanError(f"--time_budget {text!r}: not a duration; write e.g. 15m, 90s or 1h30m")
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = h * 3600 + m * 60 + s
    if not seconds > 0:
        raise PlanError(f"--time_budget {text!r}: must be longer than 0")
    return seconds


def _modality(fp: dict[str, Any]) -> str:
    modality = fp["modality"]
    return " ".join(modality.values()) if isinstance(modality, dict) else str(modality)


# what the bundles' own scalings do, for the plan's reasons
KEPT_SCALING = {
    "ScaleIntensityRanged": "fixed range scaling, which treats every image alike (brightness differences are "
    "information)",
    "ScaleIntensityd": "min-max scaling of each image",
    "ScaleIntensityRangePercentilesd": "per-image percentile scaling of each channel (colour and contrast vary with "
    "the camera and lighting; cross-validated for dermoscopy in benchmarks/README.md)",
}


def _intensity(fp: dict[str, Any], current: list) -> tuple[list, str]:
    stats, modality = fp["intensity"], _modality(fp)
    # 8-bit exports (PNG slices) already carry a display window; raw MRI values have an arbitrary scale per scanner.
    # On the 8-bit cardiac sample, z-scoring trained slower than fixed scaling (benchmarks/README.md, recipe search)
    if modality.upper().startswith("MR") and not stats["eight_bit"]:
        zscore = [{"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": False, "channel_wise": True}]
        return zscore, (
            f"{modality}: intensities have no physical unit and vary by scanner (mean {stats['mean']}, max "
            f"{stats['max']:g}): z-score each image, as nnU-Net does for MRI"
        )
    names = [t.get("_target_") for t in current or [] if isinstance(t, dict)]
    why = next((KEPT_SCALING[n] for n in names if n in KEPT_SCALING), f"intensity transforms {names}")
    return current, (
        f"{modality} with {'8-bit' if stats['eight_bit'] else 'fixed-range'} values (max {stats['max']:g}): keep the "
        f"bundle's {why}"
    )


def _class_weights(fp: dict[str, Any], num_classes: int, stats_path: Path) -> tuple[list | None, str]:
    from medseg.bundle.weights import class_weights_from_stats

    fractions = {int(k): float(v) for k, v in fp["class_fraction"].items() if int(k) > 0}
    rare = {k: v for k, v in fractions.items() if 0 < v < IMBALANCE}
    if not rare:
        low = min(fractions.values(), default=0.0)
        return None, f"rarest foreground class is {low:.1%} of training pixels: Dice handles it, no class weights"
    weights = [round(w, 4) for w in class_weights_from_stats(stats_path, num_classes)]
    shown = ", ".join(f"{k}: {v:.2%}" for k, v in sorted(rare.items()))
    return weights, f"classes below {IMBALANCE:.0%} of training pixels ({shown}): inverse-frequency weights"


def _augmentation(n_train: int) -> tuple[float, str]:
    if n_train < 200:
        return 1.0, f"{n_train} training images: full-strength augmentation (small data needs it most)"
    if n_train < 2000:
        return 0.7, f"{n_train} training images: augmentation at 0.7 strength"
    return 0.5, f"{n_train} training images: augmentation at 0.5 strength (the data itself varies)"


def time_training(bundle: Path, overrides: dict[str, Any], steps: int = TIMED_STEPS) -> float:
    """Seconds per training iteration of ``bundle`` with ``overrides``, timed on this machine.

    Random tensors of the planned batch shape go through the trainer's own ``prepare_batch`` (channels_last),
    ``inferer`` (the bf16 or fp16 autocast of :class:`medseg.runtime.AmpInferer`), network, loss function and
    optimiser, and MONAI's own CUDA autocast where the trainer uses it; data loading is left out (the bundles cache
    decoded, resized images). A step timed outside the inferer would run fp32 where training runs bf16: twice the
    time on a CPU with AVX-512 BF16, and a plan that trains smaller than the budget allows.
    """
    import torch

    from medseg.strategies.launch import load_config

    parser = load_config(bundle, [], overrides)
    network = parser.get_parsed_content("network")
    loss_fn = parser.get_parsed_content("train#trainer#loss_function")
    optimizer = parser.get_parsed_content("optimizer")
    device = parser.get_parsed_content("device")
    trainer_args = parser.get("train#trainer")

    def trainer_part(name: str) -> Any:
        return parser.get_parsed_content(f"train#trainer#{name}") if name in trainer_args else None

    amp = bool(trainer_part("amp"))
    amp_kwargs = {"device_type": device.type, **(trainer_part("amp_kwargs") or {})}
    inferer, prepare_batch = trainer_part("inferer"), trainer_part("prepare_batch")
    batch, channels = int(parser["batch_size"]), int(parser["in_channels"])
    size = [int(s) for s in parser["spatial_size"]]
    data = {"image": torch.rand(batch, channels, *size), "label": torch.randint(0, int(parser["num_classes"]),
                                                                                (batch, 1, *size))}
    if prepare_batch is not None:
        x, y = prepare_batch(data, device)[:2]
    else:
        x, y = data["image"].to(device), data["label"].to(device)
    network.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(enabled=amp, **amp_kwargs):
            loss = loss_fn(network(x) if inferer is None else inferer(x, network), y)
        loss.backward()
        optimizer.step()

    for _ in range(WARM_UP_STEPS):
        step()
    timed = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timed.append(time.perf_counter() - started)
    # the median: one step slowed by a passing load elsewhere on the machine does not move the plan's size
    return statistics.median(timed)


def _epoch_seconds(step_seconds: float, n_train: int, n_val: int, batch: int) -> float:
    """One epoch's estimated wall time: its training steps plus the validation forward passes."""
    return step_seconds * math.ceil(n_train / batch) + step_seconds / batch * VAL_COST * n_val


def _fit_steps(side: int, steps: int, min_steps: int, floor: int, k: int) -> int | None:
    """The side (a multiple of ``k``, at least ``floor``) at which ``steps`` timed at ``side`` would reach
    ``min_steps``, assuming a step costs in proportion to its pixels; None when ``side`` already buys enough or
    cannot shrink."""
    if steps >= min_steps or side <= floor:
        return None
    wanted = side * math.sqrt(max(steps, 1) / min_steps)
    smaller = max(floor, int(wanted // k) * k)
    return smaller if smaller < side else None


def make_plan(
    bundle: str | Path,
    dataset_dir: str | Path,
    time_budget: str | float = "15m",
    max_size: int | None = None,
    timer=time_training,
    min_steps: int | None = None,
) -> dict[str, Any]:
    """Plan a bundle's training on a dataset.

    Args:
        bundle: bundle name or folder (resolved as every command does).
        dataset_dir: ``data_prep`` output folder.
        time_budget: wall time for the whole training (``"15m"``, seconds); the schedule spans it.
        max_size: largest spatial side to train at (default: the bundle's own ``spatial_size``, sized for CPU).
        timer: ``(bundle_folder, overrides) -> seconds per iteration`` (tests pass a fake clock).
        min_steps: optimiser steps the budget should buy. Where it buys fewer at the full size, training runs at
            a smaller size (down to the bundle's ``min_spatial_scale`` of it), re-timed there: from random weights,
            several times the steps at a lower resolution learned more than a few steps at full size in the
            cross-validated ISIC comparison (benchmarks/README.md). None: :data:`MIN_STEPS`; 0 keeps the full size.

    Returns:
        the override dict: ids the bundle's configs use, plus ``plan`` (bundle, dataset, sha256, the reasons and
        the measurements behind them).

    Raises:
        PlanError: the time budget is too short for one epoch, or the data cannot be planned for.
    """
    from medseg.networks import nearest_multiple, size_divisor
    from medseg.strategies.launch import find_bundle, load_config

    budget = parse_duration(time_budget)
    min_steps = MIN_STEPS if min_steps is None else min_steps
    if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 0:
        raise PlanError(f"--min_steps {min_steps!r}: must be a whole number of 0 or more (0 keeps the full size)")
    folder = find_bundle(bundle)
    data = Path(dataset_dir).resolve()
    fp = fingerprint(data)
    parser = load_config(folder, [], {"dataset_dir": str(data)})
    name = str(parser["bundle_name"]) if "bundle_name" in parser else folder.name
    num_classes = int(parser["num_classes"])
    if len(fp["labels"]) and len(fp["labels"]) != num_classes:
        raise PlanError(
            f"{data / 'datalist.json'}: {len(fp['labels'])} labels but bundle {name} predicts {num_classes} classes; "
            "choose a bundle made for this data"
        )
    channels = fp["intensity"]["channels"]
    if channels != [int(parser["in_channels"])]:
        raise PlanError(
            f"{data}: images have {channels} channel(s) but bundle {name} takes {parser['in_channels']}; "
            "choose a bundle made for this data"
        )
    plan: dict[str, Any] = {}
    reasons: dict[str, str] = {}

    default_size = [int(s) for s in parser["spatial_size"]]
    cap = int(max_size) if max_size else max(default_size)
    k = size_divisor(parser.get_parsed_content("network_def"))
    median = fp["image_size"]["median"] or default_size
    longest = max(median)
    scale = min(1.0, cap / longest)
    side = nearest_multiple(round(longest * scale), k)
    plan["spatial_size"] = [side, side]
    reasons["spatial_size"] = (
        f"median image {median[0]}x{median[1]}, longest side {longest} capped at {cap} and rounded to a multiple "
        f"of {k} (the network's downsampling): square {side}x{side}"
    )

    n_train = fp["counts"]["training"]
    batch = min(int(parser["batch_size"]), n_train)
    plan["batch_size"] = batch
    reasons["batch_size"] = f"the bundle's batch size {parser['batch_size']}, at most the {n_train} training images"

    plan["intensity_transforms"], reasons["intensity_transforms"] = _intensity(fp, parser.get("intensity_transforms"))
    plan["class_weights"], reasons["class_weights"] = _class_weights(fp, num_classes, data / "stats.json")
    if "augmentation_strength" in parser:
        plan["augmentation_strength"], reasons["augmentation_strength"] = _augmentation(n_train)

    seconds = timer(folder, {"dataset_dir": str(data), **plan})
    iterations = math.ceil(n_train / batch)
    n_val = fp["counts"]["validation"]
    epoch = _epoch_seconds(seconds, n_train, n_val, batch)
    steps = int(budget // epoch) * iterations
    scale_floor = float(parser["min_spatial_scale"]) if "min_spatial_scale" in parser else 1.0
    floor = nearest_multiple(round(side * scale_floor), k)
    smaller = _fit_steps(side, steps, min_steps, floor, k)  # min_steps 0: steps always suffice
    if smaller is not None:
        full = (side, seconds, steps)
        plan["spatial_size"] = [smaller, smaller]
        seconds = timer(folder, {"dataset_dir": str(data), **plan})
        epoch = _epoch_seconds(seconds, n_train, n_val, batch)
        steps = int(budget // epoch) * iterations
        reasons["spatial_size"] += (
            f"; at {full[0]}x{full[0]} the budget buys only {full[2]} steps of {full[1]:.2f}s, fewer than "
            f"{min_steps}, so train at {smaller}x{smaller} ({steps} steps of {seconds:.2f}s; the bundle's "
            f"min_spatial_scale {scale_floor:g} allows {floor}): from random weights more steps at a lower "
            "resolution learned more than a few at full size (benchmarks/README.md); predictions are resized back "
            "to each image's own size"
        )
    epochs = int(budget // epoch)
    if epochs < 1:
        raise PlanError(
            f"--time_budget {budget:.0f}s is shorter than one epoch here ({epoch:.1f}s: {iterations} steps of "
            f"{seconds:.2f}s and validation); give at least --time_budget {math.ceil(epoch / 60)}m"
        )
    reasons["max_epochs"] = (
        f"{budget / 60:.1f} min budget / {epoch:.2f}s per epoch ({iterations} steps of {seconds:.3f}s timed here, "
        f"plus validation of {n_val} images) = {epochs} epochs"
    )
    epochs, reasons["max_epochs"] = _progressive_epochs(parser, epochs, reasons["max_epochs"])
    # the estimate misses data loading and handlers and is taken on a machine whose load changes, so it is doubled:
    # the time limit ends training and BudgetCosineLR anneals to it by the clock, so too many planned epochs cost
    # nothing, while too few (a timing taken under a passing load) would end training early
    plan["max_epochs"] = EPOCH_MARGIN * epochs
    plan["time_limit"] = round(budget, 1)
    reasons["max_epochs"] += (
        f", planned x{EPOCH_MARGIN} = {EPOCH_MARGIN * epochs} as an upper bound: training stops at the budget and "
        "the learning-rate schedule anneals to whichever comes first"
    )
    if "early_stop_patience" in parser:
        plan["early_stop_patience"], reasons["early_stop_patience"] = _patience(parser, plan["max_epochs"], epochs)
    plan["plan"] = {
        "version": PLAN_VERSION,
        "bundle": name,
        "dataset": fp["dataset"],
        "datalist_sha256": fp["sha256"],
        "time_budget_s": budget,
        "seconds_per_iteration": round(seconds, 4),
        "reasons": reasons,
        "fingerprint": fp,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return plan


def _progressive_epochs(parser, epochs: int, reason: str) -> tuple[int, str]:
    """Epochs that fit when ``progressive_scales`` trains the early stages smaller, and the reason, extended.

    A step costs about its pixels, so a stage at scale ``s`` with share ``w`` of the budget fits ``w / s**2`` of the
    full-size epochs (validation, at full size, makes that generous: the planned epochs are an upper bound that the
    clock ends anyway).
    """
    from medseg.handlers.progressive_resizing import check_stages

    if parser.get("progressive_scales") is None:
        return epochs, reason
    scales, shares = check_stages(parser.get("progressive_scales"), parser.get("progressive_shares"))
    factor = sum(w / s**2 for s, w in zip(scales, shares, strict=True))
    fitted = math.ceil(epochs * factor)
    return fitted, (
        f"{reason} at full size; progressive_scales {scales} (budget shares {[round(w, 3) for w in shares]}) train the "
        f"early stages smaller, about {factor:.2f}x as many epochs: {fitted}"
    )


def _patience(parser, max_epochs: int, epochs: int) -> tuple[int, str]:
    """Early-stopping patience for a planned run, and why.

    A bundle whose ``plan_trains_to_budget`` is true trains to its time budget: its learning rate anneals to the
    budget (``BudgetCosineLR``), a plateau seen at a quarter of the peak rate is not the end, and the best epoch's
    weights are kept whichever epoch it is, so training on costs only the minutes the user gave.
    """
    if parser.get("plan_trains_to_budget", False):
        return max_epochs, (
            f"the planned epochs ({max_epochs}), so early stopping never ends the run before its budget (the bundle's "
            "plan_trains_to_budget): the learning rate anneals to the budget and the low-rate end is where the model "
            "settles; the best epoch's weights are kept"
        )
    return max(10, epochs // 4), "a quarter of the planned epochs (at least 10): stop only on a real plateau"


def describe_plan(plan: dict[str, Any]) -> list[str]:
    """One line per choice, ``key = value`` then ``because <reason>``, for the console."""
    lines = []
    for key, reason in plan["plan"]["reasons"].items():
        value = plan[key]
        shown = "[...]" if isinstance(value, list) and value and isinstance(value[0], dict) else value
        lines += [f"{key} = {shown}", f"    because {reason}"]
    return lines


def write_plan(plan: dict[str, Any], path: str | Path) -> Path:
    """Write ``plan`` as JSON to ``path`` atomically (a temporary file renamed into place)."""
    from medseg.io import write_json

    return write_json(plan, path, indent=4)


def check_plan(plan: dict[str, Any] | None, bundle_name: str, datalist: str | Path | None = None) -> None:
    """Refuse a plan made for another bundle or another dataset (configs call this in ``initialize``).

    Args:
        plan: the config's ``plan`` id (None when no plans file is layered on the config).
        bundle_name: the config's ``bundle_name``.
        datalist: the run's datalist, or None (inference has none).

    Raises:
        PlanError: the plan names another bundle, or the datalist changed since planning.
    """
    if not plan:
        return
    if plan.get("bundle") != bundle_name:
        raise PlanError(
            f"plans.json was made for bundle {plan.get('bundle')!r}, not {bundle_name!r}; run "
            f"medseg plan --bundle {bundle_name} --dataset_dir DATA"
        )
    if datalist is not None and Path(datalist).is_file() and plan.get("datalist_sha256") != datalist_digest(datalist):
        raise PlanError(
            f"plans.json was made for dataset {plan.get('dataset')!r}, not {datalist} (its datalist differs); "
            f"run medseg plan --bundle {bundle_name} --dataset_dir {Path(datalist).parent}"
        )
