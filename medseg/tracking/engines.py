"""What the running engines say about a run: params read from the live objects, and grouped metric names.

Params from the live objects are what ran (the optimizer's actual learning rate, the loader's batch size, the
transforms' probabilities), so a value changed anywhere along the way is recorded as it was used.

Metric names are grouped as MLflow's UI groups them, by the part before ``/``: ``train/loss``, ``train/lr``,
``train/epoch_time``, ``val/loss``, ``val/mean_dice`` (the evaluator's ``val_mean_dice``), ``val/best_mean_dice``;
an evaluation run's metrics are ``eval/...``; MLflow's system metrics are ``system/...``.
"""

from __future__ import annotations

import re
from typing import Any

from medseg.handlers.engine_handlers import attached_handlers

TRAIN, VAL, EVAL = "train", "val", "eval"
TRAIN_LOSS, VAL_LOSS, LEARNING_RATE, EPOCH_TIME = "train/loss", "val/loss", "train/lr", "train/epoch_time"


def metric_name(name: str) -> str:
    """MLflow metric names allow letters, digits and ``_-./ :``; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-./ :]", "_", str(name))


def grouped(name: str, group: str) -> str:
    """``val_mean_dice`` -> ``val/mean_dice``; ``mean_dice`` -> ``<group>/mean_dice``; ``val/x`` stays."""
    name = metric_name(name)
    if "/" in name:
        return name
    for prefix in (f"{group}_", "val_", "train_", "test_", "eval_"):
        if name.startswith(prefix):
            return f"{group}/{name[len(prefix) :]}"
    return f"{group}/{name}"


def best_name(key: str) -> str:
    """``val/mean_dice`` -> ``val/best_mean_dice``."""
    group, _, rest = key.partition("/")
    return f"{group}/best_{rest}" if rest else f"best_{key}"


def plain(value: Any) -> float | None:
    """A metric value as a float, or None when it is not a finite scalar."""
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().float().mean().item() if value.numel() else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def unwrap(network: Any) -> Any:
    """The module inside ``DistributedDataParallel``/``DataParallel``."""
    return getattr(network, "module", network)


def engine_params(trainer: Any, engines: list[Any]) -> dict[str, Any]:
    """Params read from the trainer and the handlers of ``engines`` (trainer and evaluators).

    Returns:
        ``max_epochs``, ``batch_size``, ``optimizer``, ``optimizer.lr``, ``optimizer.weight_decay``, ``loss``,
        ``network``, ``early_stopping.*``, ``lr_scheduler`` and its arguments, ``val_interval``, ``spatial_size``,
        ``augmentations`` and ``augment.<RandTransform>``.
    """
    from monai.handlers import EarlyStopHandler, LrScheduleHandler, ValidationHandler

    params: dict[str, Any] = {}
    if trainer is not None:
        params["max_epochs"] = trainer.state.max_epochs
        loader = getattr(trainer, "data_loader", None)
        if getattr(loader, "batch_size", None) is not None:
            params["batch_size"] = loader.batch_size
        optimizer = getattr(trainer, "optimizer", None)
        if optimizer is not None and optimizer.param_groups:
            group = optimizer.param_groups[0]
            params["optimizer"] = type(optimizer).__name__
            params["optimizer.lr"] = group.get("lr")
            params["optimizer.weight_decay"] = group.get("weight_decay")
        loss = getattr(trainer, "loss_function", None)
        if loss is not None:
            params["loss"] = type(loss).__name__
        network = getattr(trainer, "network", None)
        if network is not None:
            params["network"] = type(unwrap(network)).__name__
            params["network.parameters"] = sum(p.numel() for p in network.parameters())
        params.update(transform_params(loader))
    for handler in [h for e in engines for h in attached_handlers(e)]:
        if isinstance(handler, EarlyStopHandler):
            params["early_stopping.patience"] = handler.patience
            params["early_stopping.min_delta"] = handler.min_delta
        elif isinstance(handler, LrScheduleHandler):
            scheduler = handler.lr_scheduler
            params.setdefault("lr_scheduler", type(scheduler).__name__)
            for attr in ("step_size", "gamma", "T_max", "max_epochs", "seconds", "eta_min", "milestones", "factor",
                         "patience", "power"):
                value = getattr(scheduler, attr, None)
                if isinstance(value, (int, float, list, set)) and not isinstance(value, bool):
                    params.setdefault(f"lr_scheduler.{attr}", sorted(value) if isinstance(value, set) else value)
        elif isinstance(handler, ValidationHandler):
            params["val_interval"] = handler.interval
    return {k: v for k, v in params.items() if v is not None}


def transform_params(loader: Any) -> dict[str, Any]:
    """Augmentation switches (random transforms and their probability) and the spatial size, from the training
    dataset's transform chain."""
    params: dict[str, Any] = {}
    transform = getattr(getattr(loader, "dataset", None), "transform", None)
    pending, flat = [transform], []
    while pending:
        item = pending.pop(0)
        if item is None:
            continue
        children = getattr(item, "transforms", None)
        if isinstance(children, (list, tuple)):
            pending = list(children) + pending
        else:
            flat.append(item)
    augmentations = []
    for item in flat:
        name = type(item).__name__
        if name.startswith("Rand"):
            augmentations.append(name)
            params[f"augment.{name}"] = getattr(item, "prob", True)
        for holder in (item, getattr(item, "resizer", None), getattr(item, "cropper", None)):
            for attr in ("spatial_size", "roi_size"):
                value = getattr(holder, attr, None) if holder is not None else None
                if value is not None and "spatial_size" not in params:
                    params["spatial_size"] = list(value) if isinstance(value, (tuple, list)) else value
    params["augmentations"] = ",".join(augmentations) or "none"
    return params


def evaluator_key_metric(evaluators: list[Any]) -> str | None:
    """The evaluator's key metric name as the engine calls it (``val_mean_dice``)."""
    for evaluator in evaluators:
        name = getattr(evaluator.state, "key_metric_name", None)
        if name:
            return str(name)
    return None
