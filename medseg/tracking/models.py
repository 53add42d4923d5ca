"""Models the MLflow way: the best checkpoint's network as a logged model, registered on request, and back.

**What is logged, and why it cannot run code when loaded.** ``mlflow.pytorch.log_model`` pickles the whole module
by default (``torch.save(model)``): loading such a model unpickles, which can run any code the sender put in it.
medseg logs with ``serialization_format="pt2"`` instead: the network is traced with ``torch.export`` and saved as an
``ExportedProgram`` (``data/model.pt2``: a graph of ATen operators plus the weights), which
``mlflow.pytorch.load_model`` reads back with ``torch.export.load`` - no pickle, no Python code from the sender.
The model also carries the bundle's ``inference.json`` and ``metadata.json`` (``extra_files``), an input example and
a signature built from ``network_data_format`` in metadata.json (the example has batch size 2, so the exported
program keeps the batch dimension dynamic). A network that ``torch.export`` cannot trace is not logged as a model
(one warning); the run still holds ``checkpoints/model.pt``, a state dict that ``torch.load(weights_only=True)``
reads.

**Back from MLflow.** :func:`resolve_model_checkpoint` turns a run id, ``runs:/RUN_ID``, ``models:/NAME/VERSION``,
``models:/NAME@ALIAS`` or ``models:/m-<model id>`` into the run's best checkpoint (weights only) and its record, for
``medseg package``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
MODEL_NAME = "model"  # the logged model's name within the run
DEFAULT_SPATIAL = 64


def example_input(metadata: dict, spatial_size: Any = None, in_channels: int | None = None) -> Any:
    """A float32 input example ``(2, C, *spatial)`` from ``network_data_format`` (zeros, so nothing is leaked).

    Args:
        metadata: metadata.json content.
        spatial_size: the training size, used where the metadata's shape is not a list of integers.
        in_channels: used where the metadata does not say.
    """
    import numpy as np

    image = ((metadata.get("network_data_format") or {}).get("inputs") or {}).get("image") or {}
    channels = image.get("num_channels", in_channels or 1)
    shape = image.get("spatial_shape")
    if not (isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape)):
        shape = spatial_size if isinstance(spatial_size, (list, tuple)) and spatial_size else [DEFAULT_SPATIAL] * 2
    return np.zeros((2, int(channels), *[int(s) for s in shape]), dtype=np.float32)


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model (what loads and runs it)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("torch", "monai", "numpy"):
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return found


def network_for_export(network: Any, checkpoint: Path | None) -> Any:
    """A CPU, eval-mode, uncompiled copy of the trained network with the kept checkpoint's weights (weights-only,
    strict load).

    Args:
        network: what the checkpoint was saved from (the bundle's ``checkpoint_network``): a module (a
            ``DistributedDataParallel`` wrapper is looked through), or a :class:`medseg.bundle.StateDictWithout`
            view that leaves training-only parts out of the checkpoint (DynUNet's deep-supervision heads), which
            the copy then lacks as well.
        checkpoint: the kept checkpoint; None keeps the network's current weights.
    """
    import torch

    from medseg.bundle.checkpoint import StateDictWithout
    from medseg.runtime.network import uncompile_network
    from medseg.tracking.engines import unwrap

    view = network if isinstance(network, StateDictWithout) else None
    # torch.export traces the module's own forward, not a torch.compile wrapper (a run with compile: true)
    model = uncompile_network(_copy_module(unwrap(view.network if view else network))).cpu().eval()
    if view is not None:
        view.remove_dropped(model)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if isinstance(state, dict):
            for key in ("model", "network", "net", "state_dict"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
        model.load_state_dict(state)
    return model


def _copy_module(module: Any) -> Any:
    """``copy.deepcopy`` of a trained module. Tensors that the last training forward left in plain attributes
    (DynUNet keeps its deep-supervision outputs in ``heads``) are nodes of an autograd graph, which deepcopy
    refuses; they hold no weights, so detached copies stand in for them."""
    import torch

    memo: dict[int, Any] = {}
    for submodule in module.modules():
        for value in vars(submodule).values():
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(item, torch.Tensor) and item.grad_fn is not None:
                    memo[id(item)] = item.detach().clone()
    return copy.deepcopy(module, memo)


def log_network(
    client: Any,
    run_id: str,
    tracking_uri: str,
    network: Any,
    checkpoint: Path | None,
    metadata: dict,
    extra_files: list[Path] | None = None,
    register_name: str | None = None,
    spatial_size: Any = None,
) -> str | None:
    """Log the network (best weights) as an MLflow model of the run, registered as ``register_name`` if given.

    Returns:
        the model URI (``models:/m-...``), or None when the network cannot be exported (a warning says why).
    """
    import mlflow
    import torch
    from mlflow.models import infer_signature

    model = network_for_export(network, checkpoint)
    example = example_input(metadata, spatial_size, getattr(model, "in_channels", None))
    with torch.no_grad():
        output = model(torch.from_numpy(example))
    if isinstance(output, (list, tuple)):  # deep supervision: the first head is the prediction
        output = output[0]
    signature = infer_signature(example, output.detach().numpy())
    from medseg.tracking.store import fluent_tracking_uri

    try:
        same_store = os.environ.get("MLFLOW_TRACKING_URI") == tracking_uri
        with fluent_tracking_uri(tracking_uri), _run_context(run_id, same_store):
            info = mlflow.pytorch.log_model(
                model,
                name=MODEL_NAME,
                serialization_format="pt2",
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
                extra_files=[str(p) for p in extra_files or [] if Path(p).is_file()] or None,
                registered_model_name=register_name or None,
                await_registration_for=60,
            )
    except Exception as error:
        if not _is_export_error(error):
            raise
        logger.warning(
            "MLflow: %s cannot be exported with torch.export (%s), so no model is logged; the run keeps "
            "checkpoints/ (a weights-only state dict)",
            type(model).__name__,
            str(error).splitlines()[0][:200] if str(error) else type(error).__name__,
        )
        return None
    client.set_tag(run_id, "medseg.model_uri", info.model_uri)
    if register_name:
        versions = client.search_model_versions(f"name = '{register_name}'", order_by=["version_number DESC"])
        mine = [v for v in versions if v.run_id == run_id]
        if mine:
            client.set_tag(run_id, "medseg.registered_model", f"models:/{register_name}/{mine[0].version}")
    return info.model_uri


def _run_context(run_id: str, same_store: bool) -> Any:
    """``mlflow.start_run(run_id)`` for the fluent ``log_model``, or nothing when that run is already the active
    one (a child run that its parent, :mod:`medseg.tracking.nested`, holds open)."""
    import mlflow

    active = mlflow.active_run()
    if same_store and active is not None and active.info.run_id == run_id:
        return contextlib.nullcontext()
    return mlflow.start_run(run_id=run_id, nested=active is not None, log_system_metrics=False)


def _is_export_error(error: BaseException) -> bool:
    """An error raised by ``torch.export`` tracing (not by the store)."""
    module = type(error).__module__ or ""
    text = f"{type(error).__name__} {error}"
    return module.startswith("torch") or "export" in text.lower() or "dynamo" in text.lower()


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME/VERSION`` -> ("version", NAME, VERSION); ``models:/NAME@ALIAS`` -> ("alias", NAME, ALIAS);
    ``models:/m-ID`` -> ("logged", ID, None); ``runs:/ID[/...]`` or a bare id -> ("run", ID, None)."""
    if uri.startswith("runs:/"):
        return "run", uri[len("runs:/") :].strip("/").split("/")[0], None
    if not uri.startswith("models:/"):
        return "run", uri, None
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return "alias", name, alias
    if "/" in rest:
        name, version = rest.rsplit("/", 1)
        return "version", name, version
    return "logged", rest, None


def run_of_model(uri: str, client: Any) -> str:
    """The id of the run that logged the model ``uri`` (see :func:`parse_model_uri`).

    Raises:
        ValueError: no such registered model, version, alias or logged model (the message lists what there is).
    """
    from mlflow.exceptions import MlflowException

    kind, name, detail = parse_model_uri(uri)
    try:
        if kind == "run":
            return name
        if kind == "logged":
            return client.get_logged_model(name).source_run_id
        if kind == "alias":
            return client.get_model_version_by_alias(name, detail).run_id
        return client.get_model_version(name, detail).run_id
    except MlflowException as error:
        known = []
        try:
            if kind in ("alias", "version"):
                known = [f"models:/{name}/{v.version}" for v in client.search_model_versions(f"name = '{name}'")]
                if not known:
                    known = [f"models:/{m.name}" for m in client.search_registered_models(max_results=20)]
        except MlflowException:
            pass
        raise ValueError(
            f"{uri}: not found ({error.message.splitlines()[0]}); known: {', '.join(known[:10]) or 'none'}"
        ) from None


def resolve_model_checkpoint(
    run_or_model_uri: str, tracking_uri: str | None = None, work_dir: str | Path | None = None
) -> tuple[Path, Any]:
    """The best checkpoint (weights only) and the run record behind a run id or a model URI.

    Args:
        run_or_model_uri: an MLflow run id, ``runs:/RUN_ID``, ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or
            ``models:/m-<logged model id>``.
        tracking_uri: the store; None resolves the default (``medseg.tracking.resolve_tracking_uri``).
        work_dir: where the run's files are downloaded (a new temporary folder by default).

    Returns:
        ``(checkpoint path, RunInfo)``; ``RunInfo.model_uri`` is set when a model URI was given.

    Raises:
        medseg.sharing.errors.SharingError: unknown run or model, or a run that logged no checkpoint.
    """
    from medseg.sharing.errors import SharingError
    from medseg.tracking import readback, store

    uri = store.resolve_tracking_uri(tracking_uri)
    kind, _, _ = parse_model_uri(run_or_model_uri)
    if kind == "run":
        info = readback.fetch_run(parse_model_uri(run_or_model_uri)[1], uri, work_dir)
        return info.checkpoint, info
    try:
        client = store.open_client(uri)
        run_id = run_of_model(run_or_model_uri, client)
    except (ValueError, store.StoreUnusable) as error:
        raise SharingError(
            run_or_model_uri, str(error), "pass models:/NAME/VERSION of a registered model, or a run id"
        ) from None
    info = readback.fetch_run(run_id, uri, work_dir)
    info.model_uri = run_or_model_uri
    return info.checkpoint, info
