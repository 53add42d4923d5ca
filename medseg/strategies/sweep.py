"""Grid sweeps: ``--grid 'KEY=[v1,v2,...]'`` entries into one set of bundle overrides per grid point.

Keys are a short name (``lr``, ``weight_decay``, ``loss``, ``strategy``, ``batch_size``, ``max_epochs``,
``spatial_size``, ``seed``) or any id of the bundle's config (``network_def#channels``); an id that is not in the
config, and whose parent is not a component (a ``_target_`` dict that can take a new argument), is an error.
``loss`` takes the names in :data:`LOSSES`; ``strategy`` takes override names from ``bundles/strategies/``
(``none`` for no override); ``network`` takes registered network names (:data:`medseg.networks.NETWORKS`: the
network's override file from ``bundles/variants/`` is layered on the bundle). For networks compared over
cross-validation folds with a table and plot, ``medseg compare-networks`` does more.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from medseg.strategies.errors import StrategyError
from medseg.strategies.launch import parse_value, strategy_file

# "lr" changes the bundle's learning_rate id where it has one (the optimizer takes its lr from it, and the logged
# learning_rate param is then what ran); a bundle without that id gets the optimizer's argument itself
ALIASES = {
    "lr": "learning_rate",
    "learning_rate": "learning_rate",
    "weight_decay": "optimizer#weight_decay",
    "wd": "optimizer#weight_decay",
    "batch_size": "batch_size",
    "epochs": "max_epochs",
    "max_epochs": "max_epochs",
    "spatial_size": "spatial_size",
    "seed": "seed",
}
LOSS_KEY, STRATEGY_KEY, NETWORK_KEY = "loss", "strategy", "network"
_CLASS_WEIGHTS = (
    "$medseg.strategies.class_weights.class_weight_tensor(@dataset_dir + '/stats.json', "
    "@network_def#out_channels, @device, method='{method}')"
)
# "import a.b" binds no usable name in a MONAI expression: import medseg for the name, the module to load it
WEIGHTS_IMPORTS = ["$import medseg", "$import medseg.strategies.class_weights"]
_SOFTMAX = {"to_onehot_y": True, "softmax": True}
LOSSES: dict[str, dict] = {
    "dicefocal": {"_target_": "DiceFocalLoss", "include_background": True, **_SOFTMAX},
    "dice": {"_target_": "DiceLoss", "include_background": True, **_SOFTMAX},
    "dicece": {"_target_": "DiceCELoss", **_SOFTMAX},
    "ce": {"_target_": "DiceCELoss", "lambda_dice": 0.0, **_SOFTMAX},
    "weighted_ce": {
        "_target_": "DiceCELoss",
        "lambda_dice": 0.0,
        "weight": _CLASS_WEIGHTS.format(method="inverse"),
        **_SOFTMAX,
    },
    "effective_ce": {
        "_target_": "DiceCELoss",
        "lambda_dice": 0.0,
        "weight": _CLASS_WEIGHTS.format(method="effective"),
        **_SOFTMAX,
    },
    "focal": {"_target_": "FocalLoss", "to_onehot_y": True, "use_softmax": True},
}


def split_list(text: str) -> list[str]:
    """``[a,b,[1,2]]`` -> ``["a", "b", "[1,2]"]``: top-level commas only (brackets and quotes nest)."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return [text]
    body, parts, depth, quote, current = text[1:-1], [], 0, "", ""
    for char in body:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def parse_grid(entries: list[str]) -> dict[str, list[Any]]:
    """``["loss=[dice,ce]", "lr=[1e-3,1e-4]"]`` -> ``{"loss": ["dice", "ce"], "lr": [0.001, 0.0001]}``.

    Raises:
        StrategyError: an entry without ``=``, an empty list, or a key given twice.
    """
    grid: dict[str, list[Any]] = {}
    for entry in entries or []:
        key, sep, values = entry.partition("=")
        key = key.strip()
        if not sep or not key:
            raise StrategyError(f"--grid {entry!r}: expected KEY=[V1,V2,...], e.g. --grid 'lr=[1e-3,1e-4]'")
        if key in grid:
            raise StrategyError(f"--grid {key!r} given twice; put all its values in one list")
        parsed = [parse_value(v) for v in split_list(values)]
        if not parsed:
            raise StrategyError(f"--grid {entry!r}: no values")
        grid[key] = [v.strip("'\"") if isinstance(v, str) else v for v in parsed]
    if not grid:
        raise StrategyError("no --grid given, e.g. --grid 'loss=[dicefocal,dice]' --grid 'lr=[1e-3,1e-4]'")
    return grid


def _target_id(parser: Any, key: str) -> str:
    config_id = ALIASES.get(key, key)
    if config_id == "learning_rate":
        derived = "learning_rate" in parser and "@learning_rate" in json.dumps(parser.get("optimizer", {}), default=str)
        config_id = "learning_rate" if derived else "optimizer#lr"
    if config_id in parser:
        return config_id
    parent, _, _ = config_id.rpartition("#")
    if parent and parent in parser and isinstance(parser[parent], dict) and "_target_" in parser[parent]:
        return config_id  # a new argument of a component, e.g. optimizer#weight_decay
    known = ", ".join([LOSS_KEY, STRATEGY_KEY, NETWORK_KEY, *ALIASES])
    raise StrategyError(
        f"unknown grid key {key!r}: it is not a short name ({known}) and the bundle's config has no id "
        f"{config_id!r}; use one of the short names or a config id such as network_def#channels"
    )


def check_grid(grid: dict[str, list[Any]], parser: Any) -> None:
    """Check every key and value against the bundle before anything runs.

    Raises:
        StrategyError: an unknown key, loss name or strategy name.
    """
    for key, values in grid.items():
        if key == LOSS_KEY:
            unknown = [v for v in values if str(v) not in LOSSES]
            if unknown:
                raise StrategyError(f"unknown loss {unknown} in --grid loss; choose from: {', '.join(LOSSES)}")
        elif key == STRATEGY_KEY:
            for value in values:
                if str(value) != "none":
                    strategy_file(str(value))
        elif key == NETWORK_KEY:
            for value in values:
                _network_files(str(value))
        else:
            _target_id(parser, key)


def _network_files(name: str) -> list[str]:
    """The override files that switch a bundle to network ``name`` (none for the bundle's own ``unet``)."""
    from medseg.networks import UnknownNetworkError, variant_files

    try:
        return variant_files(name, "train.json")[1:]  # the bundle's train.json comes first in every run anyway
    except (UnknownNetworkError, FileNotFoundError) as error:
        raise StrategyError(f"--grid network: {error}") from None


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order given (the last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def point_overrides(point: dict[str, Any], parser: Any) -> tuple[dict[str, Any], list[str]]:
    """The bundle overrides and extra strategy override files of one grid point."""
    overrides: dict[str, Any] = {}
    strategies: list[str] = []
    for key, value in point.items():
        if key == LOSS_KEY:
            overrides["loss"] = dict(LOSSES[str(value)])
            if "weight" in overrides["loss"]:  # its expression calls medseg.strategies.class_weights
                imports = list(parser.get("imports", []) or [])
                overrides["imports"] = [*imports, *WEIGHTS_IMPORTS]
        elif key == STRATEGY_KEY:
            strategies += [] if str(value) == "none" else [str(value)]
        elif key == NETWORK_KEY:
            strategies += _network_files(str(value))
        else:
            overrides[_target_id(parser, key)] = value
    return overrides, strategies


def point_label(point: dict[str, Any]) -> str:
    """``loss=dice,lr=0.001``: a grid point as a short readable label."""
    return ",".join(f"{k}={v}" for k, v in point.items()).replace(" ", "")
