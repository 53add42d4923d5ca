"""medseg from Python: the five verbs of the command line as functions with plain arguments.

Each function is what its ``medseg`` command runs (the command only parses options and prints); each raises
:class:`medseg.bundle.BundleInputError` (a ``SystemExit`` with a one-line message) or the package's own input error on
bad input, before writing anything. In a notebook::

    import medseg

    plan = medseg.plan("cardiac_unet", "data/cardiac", time_budget="10m")
    result = medseg.train("cardiac_unet", "data/cardiac", max_epochs=5)
    model = medseg.load_model("cardiac_unet", result["checkpoint"])
    summary = medseg.evaluate("my_masks", "data/cardiac/datalist.json", "report")
    medseg.predict("dist/cardiac_unet_v0.1.0.zip", "their_images", "their_masks")

Importing this module is cheap: torch, MONAI and MLflow are imported by the call that needs them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


def _bundle_folder(bundle: PathLike) -> Path:
    from medseg.bundle.paths import find_bundle

    return find_bundle(bundle)[0]


def run_configs(
    config_files: Sequence[PathLike],
    meta_file: PathLike | None = None,
    logging_file: PathLike | bool | None = None,
    **overrides: Any,
) -> Any:
    """``python -m monai.bundle run`` in this process, with medseg's checks first; returns the finished workflow.

    Args:
        config_files: the config files, merged in order (``train.json`` then override files).
        meta_file: ``metadata.json`` (default: beside the first config).
        logging_file: ``logging.conf`` (default: beside the first config); False for none.
        overrides: ``{id: value}``, as ``--id value`` on MONAI's command line.

    Returns:
        the ``monai.bundle.ConfigWorkflow`` after its run (``workflow.parser`` holds the resolved config).

    Raises:
        BundleInputError: a config file missing or not JSON, an override file given alone, an override id the
            configs do not define, or bad data met during the run.
    """
    from medseg.bundle.overrides import check_config_files, check_override_ids

    files = check_config_files([str(f) for f in config_files])
    check_override_ids(files, overrides)
    from monai.bundle import create_workflow

    first = Path(files[0]).parent
    meta = str(meta_file) if meta_file is not None else str(first / "metadata.json")
    kwargs: dict[str, Any] = {"meta_file": meta, **overrides}
    if logging_file is not None:
        kwargs["logging_file"] = logging_file if logging_file is False else str(logging_file)
    workflow = create_workflow(config_file=files, **kwargs)
    workflow.run()
    workflow.finalize()
    return workflow


def train(
    bundle: PathLike,
    dataset_dir: PathLike,
    *,
    max_epochs: int | None = None,
    output_dir: PathLike | None = None,
    strategies: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
    logging_file: PathLike | bool | None = None,
) -> dict[str, Any]:
    """Train a bundle on a ``data_prep`` output folder.

    Args:
        bundle: a bundle name (``cardiac_unet``; see ``medseg bundles``) or folder.
        dataset_dir: the folder holding ``datalist.json``.
        max_epochs: epochs (default: the bundle's).
        output_dir: the run folder (default: ``medseg_work/<bundle>/<run name>``).
        strategies: strategy override files by name (``resume``, ``onecycle``; see ``bundles/strategies``) or path.
        overrides: more config overrides, ``{"batch_size": 8, "optimizer#lr": 1e-4}``.
        logging_file: ``logging.conf`` to use (default: the bundle's); False to leave logging as it is.

    Returns:
        ``{"output_dir", "checkpoint", "key_metric", "best_metric", "best_metric_epoch"}``; the checkpoint is the
        best epoch's ``model.pt`` (None when no epoch was validated).
    """
    from medseg.strategies.launch import strategy_file

    folder = _bundle_folder(bundle)
    files = [str(folder / "configs" / "train.json"), *(str(strategy_file(s)) for s in strategies)]
    values: dict[str, Any] = {"dataset_dir": str(Path(dataset_dir).resolve()), **(overrides or {})}
    if max_epochs is not None:
        values["max_epochs"] = max_epochs
    if output_dir is not None:
        values["output_dir"] = str(Path(output_dir).resolve())
    workflow = run_configs(files, logging_file=logging_file, **values)
    out = Path(workflow.parser.get_parsed_content("output_dir"))
    state = workflow.parser.get_parsed_content("validate#evaluator").state
    best_epoch = getattr(state, "best_metric_epoch", -1)
    checkpoint = out / "model.pt"
    return {
        "output_dir": str(out),
        "checkpoint": str(checkpoint) if checkpoint.is_file() else None,
        "key_metric": getattr(state, "key_metric_name", None),
        "best_metric": float(state.best_metric) if best_epoch not in (-1, None) else None,
        "best_metric_epoch": best_epoch if best_epoch != -1 else None,
    }


def load_model(bundle: PathLike, checkpoint: PathLike | None = None, device: str = "cpu") -> Any:
    """The bundle's network with trained weights, in eval mode, ready for ``model(image_batch)``.

    Args:
        bundle: a bundle name or folder.
        checkpoint: a ``model.pt`` (default: the newest ``model.pt`` among the bundle's runs in the workspace).
        device: where to put the network.

    Returns:
        a ``torch.nn.Module``.

    Raises:
        BundleInputError: no checkpoint, or one from another network.
    """
    from monai.bundle import ConfigParser

    from medseg.bundle.checkpoint import load_checkpoint_into
    from medseg.bundle.paths import latest_checkpoint

    folder = _bundle_folder(bundle)
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser.read_meta(str(folder / "configs" / "metadata.json"))
    name = parser.get("bundle_name") or folder.name
    path = Path(checkpoint) if checkpoint is not None else Path(latest_checkpoint(name))
    network = parser.get_parsed_content("network_def")
    load_checkpoint_into(network, path, bundle=name, map_location=device)
    return network.to(device).eval()


def plan(
    bundle: PathLike,
    dataset_dir: PathLike,
    time_budget: str | float = "15m",
    *,
    max_size: int | None = None,
    min_steps: int | None = None,
    out: PathLike | None = None,
) -> dict[str, Any]:
    """Auto-configure a bundle for a dataset and a time budget; writes the plan file and returns the plan.

    Args:
        bundle: a bundle name or folder.
        dataset_dir: the ``data_prep`` output folder (``datalist.json``, ``stats.json``).
        time_budget: wall time for training, ``"15m"``, ``"90s"``, ``"1h"`` or seconds.
        max_size: the largest side to train at (default: the bundle's ``spatial_size``).
        min_steps: optimiser steps the budget should buy before the training size shrinks (default
            ``medseg.planning.planner.MIN_STEPS``; 0 keeps the full size).
        out: the plan file (default: ``DATASET_DIR/plans.json``); layer it on ``train.json`` with ``--config_file``.

    Returns:
        the plan: config overrides plus ``"plan"`` (its reasons and the file it was written to, ``"path"``).
    """
    from medseg.planning import make_plan, write_plan

    made = make_plan(bundle, dataset_dir, time_budget, max_size=max_size, min_steps=min_steps)
    path = write_plan(made, Path(out) if out is not None else Path(dataset_dir) / "plans.json")
    made["plan"]["path"] = str(path)
    return made


def _command_namespace(command: str, **values: Any) -> argparse.Namespace:
    """The options of ``medseg COMMAND`` with their defaults, updated with ``values`` (unknown names are errors)."""
    import importlib

    from medseg.cli import COMMANDS, build_parser

    parser = build_parser(command, importlib.import_module(COMMANDS[command][0]))
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise TypeError(f"medseg.{command}() got unknown argument(s) {unknown}; it takes {sorted(defaults)}")
    return argparse.Namespace(**{**defaults, **values})


def evaluate(pred: PathLike, gt: PathLike, out: PathLike, **options: Any) -> dict[str, Any]:
    """Score predicted masks against ground truth and write the report (``medseg evaluate``).

    Args:
        pred: folder of predicted masks (PNG or NIfTI), named by case id.
        gt: a ``data_prep`` ``datalist.json``, or a folder of ground-truth masks.
        out: the report folder (replaced if it holds a previous report).
        options: the command's other options by their names: ``section="validation"``, ``labels``, ``images``,
            ``merge=[...]``, ``surface_distances="auto"``, ``spacing``, ``iou_threshold=0.65``, ``examples=3``,
            ``allow_missing=False``, ``slice_thickness``.

    Returns:
        the summary: ``{"metrics": {...}, "n_cases", "missing_cases", ...}`` (the report's ``summary.json``).
    """
    from medseg.commands.evaluate import evaluate as run_evaluation

    args = _command_namespace("evaluate", pred=str(pred), gt=str(gt), out=str(out), **options)
    return run_evaluation(args)


def predict(
    bundle: PathLike,
    input: PathLike,  # noqa: A002 - the command's option name
    output: PathLike,
    *,
    overlay: bool = False,
    device: str | None = None,
    trust: bool = False,
    schema: PathLike | None = None,
    require_signed: bool = False,
    trusted_keys: PathLike | None = None,
    section: str | None = None,
    slice_thickness: float | None = None,
) -> Any:
    """Segment images with a packaged bundle, checked first (``medseg predict``).

    Args:
        bundle: a bundle folder or ``.zip`` made by ``medseg package``.
        input: a PNG/JPG image, a NIfTI file, a DICOM series folder, a folder of them, or a ``data_prep``
            datalist.json (cardiac ED/ES frames of known patients also get ``clinical.csv``).
        output: a new or empty folder outside the input.
        overlay: also write an overlay PNG per image.
        device: ``"cpu"`` or ``"cuda"`` (default: cuda when available).
        trust: run a bundle that fails the safety check anyway.
        schema: the metadata schema to check against (default: the one shipped with medseg).
        require_signed: refuse a package that no trusted key signed.
        trusted_keys: the folder of the senders' ``.pub`` keys (``medseg keys``).
        section: the datalist section to segment (default: every section); only for a datalist input.
        slice_thickness: distance between short-axis slices (mm) for the cardiac inputs that record none.

    Returns:
        the prediction result (``.rows`` per written mask, ``.skipped``, ``.output``, ``.clinical`` per patient).
    """
    from medseg.sharing.predict import predict as run_prediction

    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return run_prediction(
        str(bundle), str(input), str(output), overlay=overlay, device=device, trust=trust,
        schema=None if schema is None else str(schema), require_signed=require_signed,
        trusted_keys=None if trusted_keys is None else str(trusted_keys), section=section,
        slice_thickness=slice_thickness,
    )
