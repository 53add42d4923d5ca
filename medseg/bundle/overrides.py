"""Unknown override ids are errors: ``--max_epoch 1`` stops the run instead of adding an id nobody reads.

MONAI's ``run`` hands every ``--key value`` it does not know as a workflow argument to
``ConfigParser.update``, which adds a missing id silently. :func:`check_overrides`, called first in a bundle's
``initialize``, finds those pairs (the ``create_workflow`` call on the stack holds them, with the config files they
were given with), and ends the run with one line naming the closest ids the config defines. An id that is set by a
strategy override file (``--resume`` without ``bundles/strategies/resume.json``) gets the ``--config_file`` to use.

A new argument of a component (``--optimizer#betas``, a key under a ``_target_`` dict) is accepted: MONAI passes it
to the constructor, which checks it.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from medseg.bundle.checkpoint import check_keep_checkpoint
from medseg.bundle.datalist import check_train_on_validation
from medseg.bundle.errors import BundleInputError

# create_workflow arguments that are not config overrides
_RUN_ARGS = {"workflow_name", "config_file", "args_file", "meta_file", "logging_file", "init_id", "run_id",
             "final_id", "tracking", "workflow_type", "properties_path"}


def config_ids(config: Any, prefix: str = "") -> Iterator[str]:
    """Every id of a config, ``#``-joined (``train#trainer#max_epochs``), dict keys and list indices alike."""
    items: Iterable = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) \
        else ()
    for key, value in items:
        config_id = f"{prefix}{key}"
        yield config_id
        yield from config_ids(value, f"{config_id}#")


def is_known(parser: Any, config_id: str) -> bool:
    """True when ``config_id`` is in the config, or is a new argument of a component (a dict with ``_target_``)."""
    config_id = config_id.lstrip("+")
    if config_id in parser:
        return True
    parent, _, _ = config_id.rpartition("#")
    return bool(parent) and parent in parser and isinstance(parser[parent], dict) and "_target_" in parser[parent]


def closest_ids(parser: Any, config_id: str, n: int = 3) -> list[str]:
    """The ids of the config most like ``config_id`` (top-level ids first, then nested ones)."""
    config = parser.get()
    top = [k for k in config if not k.startswith("_")]
    nested = [i for i in config_ids(config) if "#" in i and not i.startswith("_")]
    found = difflib.get_close_matches(config_id, top, n=n, cutoff=0.6)
    return found or difflib.get_close_matches(config_id, nested, n=n, cutoff=0.6)


def _strategy_defining(config_id: str) -> Path | None:
    """The strategy override file (``bundles/strategies/*.json``) that defines ``config_id``, if any."""
    import json

    from medseg.bundle.paths import shared_file

    try:
        folder = shared_file("strategies")
    except BundleInputError:
        return None
    for path in sorted(folder.glob("*.json")):
        try:
            if config_id in json.loads(path.read_text()):
                return path
        except (OSError, ValueError):
            continue
    return None


def unknown_override_message(parser: Any, config_id: str, config_files: list[str] | None = None,
                             flag: str = "--{id}") -> str:
    """One line saying that ``config_id`` is not in the config, with the closest ids or the file that defines it.

    Args:
        parser: a ``ConfigParser`` of the configs without the overrides.
        config_id: the unknown id.
        config_files: the config files given (for the ``--config_file`` hint of a strategy id).
        flag: how the user spelled the override (``--{id}`` on the command line, ``--set {id}=...`` in medseg).
    """
    shown = flag.format(id=config_id)
    strategy = _strategy_defining(config_id)
    if strategy is not None:
        files = [*(config_files or ["configs/train.json"]), str(strategy)]
        listed = ",".join(f"'{f}'" for f in files)
        return (f"{shown}: the bundle's configs do not define {config_id!r}; it is set by the override file "
                f"{strategy}: add it, --config_file \"[{listed}]\" (nothing was run)")
    close = closest_ids(parser, config_id)
    hint = f"did you mean {' or '.join(close)}?" if close else "see the ids in the bundle's configs/*.json"
    return f"{shown}: the bundle's config has no id {config_id!r} (nothing was run); {hint}"


def check_override_ids(config_files: str | list[str], overrides: dict[str, Any], flag: str = "--{id}") -> None:
    """Raise when an override names an id the config files do not define.

    Args:
        config_files: the config file or files, merged in order (as ``--config_file``).
        overrides: ``{id: value}`` pairs.
        flag: how the user spelled an override, for the message.

    Raises:
        BundleInputError: an unknown id, naming the closest known ones.
    """
    from monai.bundle import ConfigParser

    files = [config_files] if isinstance(config_files, str) else list(config_files)
    parser = ConfigParser()
    parser.read_config(files)
    for config_id in overrides:
        if config_id.startswith("_meta_") or is_known(parser, config_id):
            continue
        raise BundleInputError(unknown_override_message(parser, config_id, files, flag))


def _pending_run() -> tuple[Any, dict] | None:
    """``(config_file, overrides)`` of the ``monai.bundle`` ``create_workflow`` call on the stack, else None."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name == "create_workflow" and "_args" in frame.f_locals:
                local = frame.f_locals
                workflow = local.get("workflow_class")
                params = set(inspect.signature(workflow).parameters) if workflow is not None else set()
                overrides = {k: v for k, v in local["_args"].items() if k not in _RUN_ARGS | params}
                return local.get("config_file"), overrides
            frame = frame.f_back
    finally:
        del frame
    return None


def check_overrides() -> None:
    """Stop a bundle run whose command line sets an id its config does not define.

    Meant as the first ``initialize`` expression: ``"$medseg.bundle.check_overrides()"``. Outside
    ``monai.bundle run`` (a ``ConfigWorkflow`` built in Python) there is no command line to check: nothing happens.

    Raises:
        BundleInputError: ``--max_epoch: the bundle's config has no id 'max_epoch' ...; did you mean max_epochs?``
    """
    pending = _pending_run()
    if pending is None or pending[0] is None:
        return
    config_file, overrides = pending
    if not overrides:
        return
    from monai.bundle.utils import ID_SEP_KEY

    files = config_file
    if isinstance(files, str) and files.strip().startswith("["):
        import ast

        files = ast.literal_eval(files)
    check_override_ids(files, {str(k).replace("::", ID_SEP_KEY): v for k, v in overrides.items()})


def check_config_files(config_files: str | Sequence[str]) -> list[str]:
    """Check the ``--config_file`` list before MONAI reads it: each file exists and parses, and the first one is a
    whole config rather than an override file (``evaluate.json`` alone).

    Args:
        config_files: one path, a list of paths, or MONAI's ``"['a.json','b.json']"`` text.

    Returns:
        the paths as a list.

    Raises:
        BundleInputError: naming the file and the fix.
    """
    files = config_files
    if isinstance(files, str) and files.strip().startswith("["):
        import ast

        try:
            files = ast.literal_eval(files)
        except (ValueError, SyntaxError):
            raise BundleInputError(
                f"--config_file {config_files}: not a list of paths; write it as \"['a.json','b.json']\""
            ) from None
    files = [str(files)] if isinstance(files, (str, Path)) else [str(f) for f in files]
    if not files:
        raise BundleInputError("--config_file: no config given; pass a bundle's configs/train.json")
    contents = [_read_config(path) for path in files]
    first, data = files[0], contents[0]
    dangling = sorted(k for k in data if k != k.lstrip("+").split("#")[0] and k.lstrip("+").split("#")[0] not in data)
    if dangling:
        base = "train.json" if Path(first).name != "inference.json" else "inference.json"
        folder = Path(first).parent
        raise BundleInputError(
            f"{first}: an override file, not a whole config (it extends {dangling[0]!r}); give it after {base}, "
            f"--config_file \"['{folder / base}','{first}']\""
        )
    return files


def _read_config(path: str) -> dict:
    """One config file as a dict; a missing or unparsable file is a :class:`BundleInputError` naming it."""
    import json

    file = Path(path)
    if not file.is_file():
        hint = "a folder: pass its configs/train.json" if file.is_dir() else "check the path"
        raise BundleInputError(f"--config_file {path}: no such file ({hint})")
    text = file.read_text(errors="replace")
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError: both name line and column
        raise BundleInputError(f"{path}: not a valid config file ({err}); fix the file or pass another") from None
    if not isinstance(data, dict):
        raise BundleInputError(f"{path}: a config file must hold a JSON object (ids and values)")
    return data


def check_positive(option: str, value: Any, integer: bool = True) -> None:
    """Raise :class:`BundleInputError` unless ``value`` is a positive number (an integer when ``integer``)."""
    kind = "a positive whole number" if integer else "a positive number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BundleInputError(f"{option} {value!r}: must be {kind}") from None
    if number <= 0 or number != number or (integer and number != int(number)) or isinstance(value, bool):
        raise BundleInputError(f"{option} {value!r}: must be {kind}, e.g. {option} {5 if integer else 0.001}")


def check_fraction(option: str, value: Any, example: float) -> None:
    """Raise :class:`BundleInputError` unless ``value`` is a number strictly between 0 and 1."""
    try:
        ok = 0 < float(value) < 1 and not isinstance(value, (bool, str))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise BundleInputError(
            f"{option} {value!r}: must be a number between 0 and 1 (exclusive), e.g. {option} {example}"
        )


def check_run_settings(**settings: Any) -> None:
    """Check the settings a run cannot start without before anything is built: ``max_epochs``, ``batch_size`` and
    ``val_interval`` positive whole numbers, ``learning_rate`` a number of at least 0 (0 freezes the weights),
    ``keep_checkpoint`` best or last, ``weight_average_momentum`` null or a number between 0 and 1,
    ``train_on_validation`` true or false, and true only with ``keep_checkpoint`` last (scores on trained-on cases
    cannot pick the best epoch), ``progressive_scales`` null or scales rising to 1.0 (with ``progressive_shares``
    null or one share of the budget per scale).
    Meant for ``initialize``: ``"$medseg.bundle.check_run_settings(max_epochs=@max_epochs, batch_size=@batch_size)"``.

    Raises:
        BundleInputError: ``--max_epochs 0: must be a positive whole number ...``.
    """
    for name, value in settings.items():
        if name == "keep_checkpoint":
            check_keep_checkpoint(value)
            continue
        if name == "train_on_validation":
            if check_train_on_validation(value) and settings.get("keep_checkpoint") == "best":
                raise BundleInputError(
                    "--train_on_validation true trains on the validation cases, so their scores cannot pick the best "
                    "epoch: keep the last one (--keep_checkpoint last, the default with train_on_validation)"
                )
            continue
        if name == "progressive_scales" and value is not None:
            from medseg.handlers.progressive_resizing import check_stages

            check_stages(value, settings.get("progressive_shares"))
            continue
        if name == "progressive_shares":
            if value is not None and settings.get("progressive_scales") is None:
                raise BundleInputError(f"--progressive_shares {value!r}: set --progressive_scales too, "
                                       "e.g. --progressive_scales '[0.5, 1.0]' --progressive_shares '[0.6, 0.4]'")
            continue
        if value is None:
            continue
        if name == "weight_average_momentum":
            check_fraction(f"--{name}", value, 0.01)
            continue
        if name == "learning_rate":
            try:
                ok = float(value) >= 0 and not isinstance(value, bool)
            except (TypeError, ValueError):
                ok = False
            if not ok:  # NaN fails the comparison too
                raise BundleInputError(f"--learning_rate {value!r}: must be a number of at least 0, e.g. 0.001")
            continue
        check_positive(f"--{name}", value)
