"""Finding a bundle and its strategy override files, reading its config, running it in-process.

Every multi-run command (``lr-find``, ``progressive``, ``kfold``, ``sweep``) goes through here, so a bundle is always
run the same way as ``python -m monai.bundle run --config_file "['configs/train.json', OVERRIDE...]"`` with
``--key value`` overrides.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from medseg.bundle.errors import BundleInputError
from medseg.strategies.errors import StrategyError

TRAIN_CONFIG = Path("configs") / "train.json"
METADATA = Path("configs") / "metadata.json"


def strategies_dir() -> Path:
    """The strategy override files: ``bundles/strategies`` found by the bundle rule (current folder, installed)."""
    from medseg.bundle.paths import shared_file

    return shared_file("strategies")


def available_strategies() -> list[str]:
    """The override names in the strategies folder (file names without ``.json``)."""
    return sorted(p.stem for p in strategies_dir().glob("*.json"))


def find_bundle(bundle: str | Path) -> Path:
    """The folder of a bundle given by name or path (``medseg.bundle.find_bundle``'s rule), printed for the user.

    Raises:
        StrategyError: no such bundle, or a folder without ``configs/train.json``.
    """
    from medseg.bundle.paths import find_bundle as locate

    try:
        folder, where = locate(bundle)
    except BundleInputError as err:
        raise StrategyError(str(err)) from None
    if not (folder / TRAIN_CONFIG).is_file():
        raise StrategyError(f"{folder}: no {TRAIN_CONFIG}; pass --bundle NAME or a bundle folder")
    print(f"bundle {folder.name}: {folder} ({where})")
    return folder


def strategy_file(name: str | Path) -> Path:
    """The override file of a strategy, by name (``bundles/strategies/<name>.json``) or by path.

    Raises:
        StrategyError: unknown strategy name.
    """
    path = Path(name)
    if path.suffix in (".json", ".yaml", ".yml") and path.is_file():
        return path.resolve()
    found = strategies_dir() / f"{name}.json"
    if found.is_file():
        return found
    raise StrategyError(
        f"unknown strategy {str(name)!r}: no {found}; choose one of: {', '.join(available_strategies())} "
        "(or pass the path of an override .json)"
    )


def config_files(bundle: Path, strategies: list[str] | None = None) -> list[str]:
    """``configs/train.json`` followed by the strategies' override files, in order."""
    return [str(bundle / TRAIN_CONFIG), *(str(strategy_file(s)) for s in strategies or [])]


def parse_value(text: str) -> Any:
    """A command-line value as Python: JSON or a Python literal when it parses as one, else the string itself."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            continue
    return text


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` (``--set``) as a dict of config overrides.

    Raises:
        StrategyError: an entry without ``=``.
    """
    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise StrategyError(
                f"--set {pair!r}: expected KEY=VALUE, e.g. --set max_epochs=5 or --set optimizer#lr=1e-3"
            )
        overrides[key.strip()] = parse_value(value.strip())
    return overrides


def base_overrides(bundle: Path, dataset_dir: str | Path | None) -> dict[str, Any]:
    """What every in-process run sets: the bundle folder and, when given, the dataset folder."""
    overrides: dict[str, Any] = {"bundle_root": str(bundle)}
    if dataset_dir is not None:
        folder = Path(dataset_dir).resolve()
        if not (folder / "datalist.json").is_file():
            raise StrategyError(
                f"{folder}: no datalist.json; pass --dataset_dir a folder written by python -m data_prep"
            )
        overrides["dataset_dir"] = str(folder)
    return overrides


def load_config(bundle: Path, strategies: list[str] | None = None, overrides: dict[str, Any] | None = None) -> Any:
    """The bundle's ``ConfigParser`` with the override files and ``overrides`` applied (nothing instantiated yet).

    Args:
        bundle: the bundle folder.
        strategies: strategy names or override files, applied in order after ``train.json``.
        overrides: ``{id: value}``, as ``--id value`` on the MONAI command line.

    Returns:
        a ``monai.bundle.ConfigParser``.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_meta(str(bundle / METADATA))
    parser.read_config(config_files(bundle, strategies))
    parser.update(dict(overrides or {}))
    return parser


def check_ids(parser: Any, ids: list[str], where: str) -> None:
    """Raise a clear error when an id the caller relies on is missing from the config.

    Raises:
        StrategyError: one of ``ids`` is not in the config.
    """
    missing = [i for i in ids if i not in parser]
    if missing:
        raise StrategyError(
            f"{where}: the config has no {', '.join(repr(m) for m in missing)}; every medseg bundle defines the "
            "model-zoo ids (network_def, network, loss, optimizer, train#dataloader, output_dir, ...)"
        )


def run_bundle(bundle: Path, strategies: list[str] | None = None, overrides: dict[str, Any] | None = None) -> None:
    """``python -m monai.bundle run`` in this process, with override files and ``--key value`` overrides.

    Args:
        bundle: the bundle folder.
        strategies: strategy names or override files.
        overrides: ``{id: value}``.
    """
    from monai.bundle import run

    from medseg.tracking import EXECUTE_CONFIG_SETTINGS

    run(
        config_file=config_files(bundle, strategies),
        meta_file=str(bundle / METADATA),
        logging_file=False,
        tracking=EXECUTE_CONFIG_SETTINGS,  # MONAI exports the executed config, which MLflow tracking logs
        **dict(overrides or {}),
    )


def add_common_arguments(parser: Any) -> None:
    """The options every multi-run command shares (``lr-find``, ``progressive``, ``kfold``, ``sweep``)."""
    parser.add_argument("--bundle", required=True, help="bundle name in bundles/ (e.g. cardiac_unet) or folder")
    parser.add_argument("--dataset_dir", help="data_prep output folder (default: the bundle's dataset_dir)")
    parser.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="NAME",
        help="override file from bundles/strategies/ (or a path), applied to every run; repeatable",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="config override for every run, e.g. --set max_epochs=5 --set optimizer#lr=1e-3; repeatable",
    )
    parser.add_argument("--max_epochs", type=int, help="epochs of every training run (default: the bundle's)")
    parser.add_argument("--seed", type=int, help="the bundle's seed id (runs with the same seed match on CPU)")
    parser.add_argument("--out", help="output folder (default: medseg_work/<bundle>/<command>-<time>)")
    parser.add_argument("--tracking_uri", help="MLflow store or server (default: MLFLOW_TRACKING_URI, else local)")
    parser.add_argument("--experiment_name", help="MLflow experiment (default: <bundle>/<dataset>)")
    parser.add_argument(
        "--register", metavar="NAME", help="register each trained model in the MLflow Model Registry as NAME"
    )


# commands that choose between runs by their validation scores, which train_on_validation makes training scores
SCORED_ON_VALIDATION = ("kfold", "sweep", "compare-networks")


class CommandSetup:
    """What a multi-run command resolved from its common options, all checked before anything runs.

    Raises:
        StrategyError: an unknown bundle or strategy, a bad ``--set``, a missing datalist, a missing ``seed`` id.
    """

    def __init__(self, args: Any, command: str) -> None:
        import time

        from medseg.bundle.overrides import check_override_ids
        from medseg.bundle.paths import workspace
        from medseg.tracking import datalist_name, experiment_name

        self.bundle = find_bundle(args.bundle)
        self.strategies = list(args.strategy or [])
        for name in self.strategies:
            strategy_file(name)
        self.overrides = base_overrides(self.bundle, args.dataset_dir)
        extra = parse_overrides(args.overrides)
        check_override_ids(config_files(self.bundle, self.strategies), extra, flag="--set {id}=...")
        self.overrides.update(extra)
        if args.max_epochs is not None:
            self.overrides["max_epochs"] = args.max_epochs
        if args.seed is not None:
            self.overrides["seed"] = args.seed
        if getattr(args, "register", None):
            self.overrides["register_model_name"] = args.register
        self.parser = load_config(self.bundle, self.strategies, self.overrides)
        if args.seed is not None:
            self._check_seed()
        if command in SCORED_ON_VALIDATION and self._trains_on_validation():
            raise StrategyError(
                f"medseg {command} compares runs by their validation scores, and train_on_validation true trains on "
                "the validation cases: drop --set train_on_validation=true (use it for the final fit, "
                "python -m monai.bundle run ... --train_on_validation true)"
            )
        self.name = json.loads((self.bundle / METADATA).read_text()).get("name", self.bundle.name)
        self.datalist = str(self.parser.get_parsed_content("datalist"))
        if not Path(self.datalist).is_file():
            raise StrategyError(f"{self.datalist}: datalist not found; pass --dataset_dir DATA_PREP_OUTPUT")
        self.experiment = args.experiment_name or experiment_name(self.name, datalist_name(self.datalist))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.out = Path(args.out or workspace() / self.name / f"{command}-{stamp}").resolve()
        self.tracking_uri = args.tracking_uri

    def _trains_on_validation(self) -> bool:
        return "train_on_validation" in self.parser and self.parser.get_parsed_content("train_on_validation") is True

    def _check_seed(self) -> None:
        raw = json.dumps(self.parser.get("initialize", []))
        if "@seed" not in raw:
            raise StrategyError(
                f"{self.bundle / TRAIN_CONFIG}: --seed needs the bundle to use a 'seed' id "
                '("initialize": ["$monai.utils.set_determinism(seed=@seed)", ...]); it has none'
            )

    def run(self, overrides: dict[str, Any] | None = None, strategies: list[str] | None = None) -> None:
        """Run the bundle with the common overrides, then ``overrides``; common strategies, then ``strategies``."""
        run_bundle(self.bundle, self.strategies + list(strategies or []), {**self.overrides, **(overrides or {})})

    def config(self, overrides: dict[str, Any] | None = None, strategies: list[str] | None = None) -> Any:
        """The parsed config of one run (see :meth:`run`)."""
        return load_config(
            self.bundle, self.strategies + list(strategies or []), {**self.overrides, **(overrides or {})}
        )
