"""What a bundle run is made of: its executed config, params and tags for MLflow.

The executed config is MONAI's own export (``save_execute_config``, written with ``--tracking``), read by
:func:`executed_config`; the values that define a run are also handed to the handler by reference
(``tracked_params``), so params never depend on that export.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# top-level ids that say where things are on this machine, not what the run is; left out of params
NON_DEFINING_IDS = {
    "imports",
    "bundle_root",
    "output_dir",
    "ckpt_dir",
    "device",
    "tracking_uri",
    "experiment_name",
    "run_name",
    "save_execute_config",
    "tracked_params",
    "register_model_name",
    "log_model",
    "tracking_import",
    "is_not_rank0",
    "_meta_",
}
# config ids holding the components that define a run, and the param prefix each gets
COMPONENT_IDS = {
    "network": ("network_def", "train#network_def"),
    "loss": ("loss", "train#loss", "loss_function"),
    "optimizer": ("optimizer", "train#optimizer"),
    "lr_scheduler": ("lr_scheduler", "train#lr_scheduler", "scheduler"),
}
MAX_PARAM_CHARS = 500


def executed_config(source: Any = None) -> dict:
    """The config as it ran, from MONAI's own export of it; ``{}`` (with a loud warning) when there is none.

    MONAI writes the executed config (every override applied) when a bundle runs with ``--tracking`` (or medseg's
    commands, which always ask for it): the ``save_execute_config`` id then holds the file's path. The handler
    receives that id (``"execute_config": "@save_execute_config"``) and reads the file here. MONAI hands config
    expressions no handle on their parser, and medseg does not go looking for one on the call stack.

    Args:
        source: a path to MONAI's exported config, a config dict, or None/True/False (no export made).

    Returns:
        the config dict (``_meta_`` holds metadata.json), or ``{}``.
    """
    if isinstance(source, dict):
        return copy.deepcopy(source)
    if isinstance(source, (str, Path)) and str(source):
        literal = MONAI_LITERAL_PATH.match(str(source))
        if literal and not Path(source).exists():  # see MONAI_LITERAL_PATH
            source = Path(literal.group(1)) / literal.group(2)
        try:
            loaded = json.loads(Path(source).read_text())
        except (OSError, ValueError) as error:
            logger.warning(
                "MLflow: the executed config %s cannot be read (%s); params come from the run's engines", source, error
            )
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}


# MONAI (patch_bundle_tracking) sets save_execute_config to ``output_dir + " + '/config_<time>.json'"``: an
# expression when output_dir is one, but a plain string "DIR + '/config_<time>.json'" when output_dir is given as a
# path (``--output_dir DIR``); the file itself is written to DIR/config_<time>.json
MONAI_LITERAL_PATH = re.compile(r"^(.*) \+ '/(config_\d{8}_\d{6}\.json)'$")

MISSING_CONFIG_WARNING = (
    "MLflow: this run has no executed config (MONAI writes one with --tracking; medseg's commands always ask for "
    "it). The run's params come from the bundle's tracked_params and the live engines, and config/"
    "executed_config.json is not logged. Run with --tracking mlflow (python -m monai.bundle run ... --tracking "
    "mlflow) to record the full config."
)


def _lookup(config: dict, config_id: str) -> Any:
    node: Any = config
    for part in config_id.split("#"):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(config_id)
    return node


def _literal(config: dict, value: Any, depth: int = 0) -> Any:
    """Follow ``@id`` references through the raw config to a literal; expressions stay as their text."""
    if isinstance(value, str) and value.startswith("@") and depth < 10:
        try:
            return _literal(config, _lookup(config, value[1:]), depth + 1)
        except KeyError:
            return value
    if isinstance(value, list):
        return [_literal(config, v, depth + 1) for v in value]
    return value


def _is_plain(value: Any) -> bool:
    """A scalar or a short list of scalars: something a param can hold readably."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return True
    return (
        isinstance(value, list)
        and len(value) <= 16
        and all(isinstance(v, (bool, int, float, str)) and not str(v).startswith(("$", "@", "%")) for v in value)
    )


def _short_target(target: str) -> str:
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else str(target)


def config_params(config: dict) -> dict[str, Any]:
    """Params from an executed bundle config: the components (class and arguments) and top-level literals.

    Args:
        config: the raw executed config (see :func:`executed_config`).

    Returns:
        flat ``{name: value}``: ``network``, ``network.<arg>``, ``encoder``, ``loss``, ``loss.<arg>``,
        ``optimizer``, ``optimizer.<arg>``, ``lr_scheduler``, ... and every top-level id whose value is a literal
        (``seed``, ``fold``, ``learning_rate``, ``batch_size``, ``spatial_size``, ``max_epochs``, ...).
    """
    params: dict[str, Any] = {}
    for key, value in config.items():
        if key in NON_DEFINING_IDS or key.startswith("_"):
            continue
        value = _literal(config, value)
        if _is_plain(value) and not (isinstance(value, str) and value.startswith(("$", "%"))):
            params[key] = value
    for prefix, candidates in COMPONENT_IDS.items():
        for config_id in candidates:
            try:
                component = _literal(config, _lookup(config, config_id))
            except KeyError:
                continue
            if not isinstance(component, dict) or "_target_" not in component:
                continue
            params[prefix] = _short_target(component["_target_"])
            for arg, value in component.items():
                if arg.startswith("_") or arg == "params":
                    continue
                value = _literal(config, value)
                if _is_plain(value):
                    params[f"{prefix}.{arg}"] = value
            break
    if "seed" not in params:  # model-zoo bundles seed in "initialize": "$monai.utils.set_determinism(seed=0)"
        found = re.search(r"seed\s*=\s*(\d+)", json.dumps(config.get("initialize", "")))
        if found:
            params["seed"] = int(found.group(1))
    if "network.backbone" in params:
        params["encoder"] = params["network.backbone"]
    return params


def format_params(params: dict[str, Any]) -> dict[str, str]:
    """Params as MLflow strings, each cut to a readable length."""
    formatted = {}
    for key, value in params.items():
        text = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
        formatted[key] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."
    return formatted


def sha256_of(path: str | Path) -> str | None:
    """The file's sha256 in hex, or None when it cannot be read."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def git_state(folder: str | Path) -> tuple[str, bool] | None:
    """(commit, dirty) of the git work tree holding ``folder``, or None when it is not one (or git is absent)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit, bool(status.strip())


def package_versions() -> dict[str, str]:
    """Versions of medseg, MONAI, torch, ignite and MLflow as installed."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("medseg", "monai", "torch", "pytorch-ignite", "mlflow"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_tags(
    metadata: dict | None, datalist: str | Path | None, bundle_root: str | Path | None, device: Any = None
) -> dict[str, str]:
    """Tags that identify a run's code, data and machine.

    Args:
        metadata: the bundle's ``metadata.json`` content (``name``, ``version``).
        datalist: the datalist file, hashed so a changed split shows.
        bundle_root: where to look for the git work tree.
        device: the torch device the run uses.

    Returns:
        ``medseg.bundle``, ``medseg.bundle_version``, ``mlflow.source.git.commit``, ``medseg.git_dirty``,
        ``medseg.datalist_sha256``, ``medseg.version.<package>``, ``medseg.device``, ``mlflow.user``,
        ``mlflow.source.name`` (the bundle folder), ``mlflow.source.type``.
    """
    metadata = metadata or {}
    tags = {
        "medseg.bundle": str(metadata.get("name", "unknown")),
        "medseg.bundle_version": str(metadata.get("version", "unknown")),
    }
    state = git_state(bundle_root) if bundle_root and Path(bundle_root).is_dir() else None
    tags["mlflow.source.git.commit"] = state[0] if state else "unknown"
    tags["medseg.git_dirty"] = str(state[1]).lower() if state else "unknown"
    if datalist:
        tags["medseg.datalist"] = str(datalist)
        tags["medseg.datalist_sha256"] = sha256_of(datalist) or "unreadable"
    for name, found in package_versions().items():
        tags[f"medseg.version.{name}"] = found
    tags.update(source_tags(metadata, bundle_root))
    if device is not None:
        tags["medseg.device"] = str(device)
    return tags


def source_tags(metadata: dict | None, bundle_root: str | Path | None) -> dict[str, str]:
    """MLflow's own ``mlflow.user`` and ``mlflow.source.*`` tags (the UI's Created-by and Source columns)."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = "unknown"
    name = str(Path(bundle_root).resolve()) if bundle_root else str((metadata or {}).get("name", "medseg"))
    return {"mlflow.user": user, "mlflow.source.name": name, "mlflow.source.type": "LOCAL"}


def datalist_name(datalist: str | Path | None) -> str | None:
    """The ``name`` field of a datalist, or None when it cannot be read."""
    if not datalist:
        return None
    try:
        return json.loads(Path(datalist).read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None
