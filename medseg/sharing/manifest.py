"""``manifest.json``: a shared model as data, and the integrity of every file of its package.

The manifest names the network, the preprocessing steps and the post-processing by names registered in
:mod:`medseg.sharing.registry`, with typed parameters; the weights are safetensors files; ``files`` holds the
sha256 of every other file of the package. It is validated by ``schemas/manifest.schema.json`` (``jsonschema``)
and then by the registry's argument checks. ``medseg predict`` builds its whole pipeline from this file and
medseg's own code; it never reads a config expression, imports a name the package chose, or unpickles.

:func:`derive_from_config` writes a manifest from a trained bundle's ``inference.json`` on the packager's side
(the packager trusts their own bundle, so MONAI's ``ConfigParser`` resolves its references and expressions),
mapping the transforms and networks it knows to registered names and refusing anything it cannot express.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medseg.bundle.errors import BundleInputError
from medseg.sharing.errors import SharingError

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
FORMAT = "medseg-manifest/1"
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "manifest.schema.json"
NOT_HASHED = (MANIFEST_NAME, SIGNATURE_NAME)


@functools.cache
def manifest_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def validate_manifest(manifest: Any, where: str | Path = MANIFEST_NAME) -> dict:
    """Check a manifest against the JSON schema and the registry's argument types.

    Raises:
        SharingError: one line naming the first problem (its JSON path) and the file.
    """
    import jsonschema

    from medseg.sharing.registry import ArgumentError, check_network, check_step

    validator = jsonschema.Draft202012Validator(manifest_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        at = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        message = first.message if len(first.message) < 300 else first.message[:300] + "..."
        raise SharingError(where, f"is not a valid medseg manifest: at {at}: {message}", "re-package the model")
    try:
        check_network(manifest["network"]["name"], manifest["network"]["arguments"])
        for i, step in enumerate(manifest["preprocessing"]):
            check_step(i, step)
    except ArgumentError as exc:
        raise SharingError(where, f"is not a valid medseg manifest: {exc}", "re-package the model") from exc
    labels = {int(k) for k in manifest["labels"]}
    out = manifest["network"]["arguments"].get("out_channels")
    if labels != set(range(len(labels))) or (out is not None and out != len(labels)):
        raise SharingError(where, f"labels {sorted(labels)} do not match out_channels {out}", "re-package the model")
    for cls in manifest["postprocessing"].get("classes", {}):
        if int(cls) not in labels:
            raise SharingError(where, f"postprocessing names class {cls}, which has no label", "re-package the model")
    return manifest


def read_manifest(folder: Path) -> dict:
    """Read and validate ``folder/manifest.json``.

    Raises:
        SharingError: missing, not JSON, or invalid.
    """
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SharingError(path, "not found", "package the model with 'medseg package'") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise SharingError(path, f"is not JSON ({exc})", "ask the sender for a new copy") from exc
    return validate_manifest(manifest, path)


def package_files(folder: Path) -> list[str]:
    """Every file of a package (relative POSIX paths) except the manifest and its signature."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.relative_to(folder).as_posix() not in NOT_HASHED
    )


def hash_files(folder: Path) -> dict[str, str]:
    from medseg.sharing.check import sha256_file

    return {rel: sha256_file(folder / rel) for rel in package_files(folder)}


def verify_files(folder: Path, manifest: dict, digest: Callable[[Path], str] | None = None) -> list[str]:
    """One line per file that differs from the manifest: changed, missing, or not listed.

    ``digest``: the hex sha256 of a file (default :func:`medseg.sharing.check.sha256_file`; a check that hashes the
    model files too passes a memoised one, so each file is read once).
    """
    from medseg.sharing.check import sha256_file

    digest = digest or sha256_file
    recorded = manifest.get("files", {})
    present = set(package_files(folder))
    problems = []
    for rel in sorted(set(recorded) | present):
        path = folder / rel
        if rel not in recorded:
            problems.append(f"{rel}: not listed in {MANIFEST_NAME}: the file was added after packaging")
        elif rel not in present:
            problems.append(f"{rel}: listed in {MANIFEST_NAME} but missing")
        elif path.is_symlink():
            problems.append(f"{rel}: is a symbolic link; a package holds plain files only")
        elif digest(path) != recorded[rel]:
            problems.append(f"{rel}: sha256 does not match {MANIFEST_NAME}: the file was changed after packaging")
    for weights in manifest.get("weights", []):
        if weights["file"] not in recorded:
            problems.append(f"{weights['file']}: weights file has no sha256 in {MANIFEST_NAME}")
    return problems


# ------------------------------------------------------------------ packager side: config -> manifest

_SKIPPED_PRE = ("LoadImaged", "EnsureChannelFirstd", "CheckChannelsd", "SelectItemsd", "EnsureTyped", "ToTensord")
_SKIPPED_POST = ("Invertd", "SaveImaged", "EnsureTyped", "ToTensord")
_KNOWN_PRE = (
    "SqueezeSliced",
    "ScaleIntensityd",
    "ScaleIntensityRanged",
    "ScaleIntensityRangePercentilesd",
    "NormalizeIntensityd",
    "Resized",
    "AntialiasedResized",
)
_KNOWN_POST = ("Activationsd", "AsDiscreted", "ArgmaxLabelsd", "KeepLargestConnectedComponentd", "FillHolesd")
_IGNORED_ARGS = ("_target_", "keys", "allow_missing_keys", "_disabled_", "_desc_", "_requires_", "_mode_")


def _plain(value: Any) -> Any:
    """A resolved config value as plain JSON (tuples -> lists, numpy/torch scalars -> numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{type(value).__name__} value {value!r}")


def _class_of(target: Any) -> Any:
    """The class a ``_target_`` names, resolved as MONAI does (packager side only)."""
    from monai.bundle.config_item import ComponentLocator

    import medseg.networks  # noqa: F401
    import medseg.transforms  # noqa: F401

    if not isinstance(target, str):
        return None
    located = ComponentLocator().get_component_module_name(target)
    if isinstance(located, list):
        located = located[0] if located else None
    if located:
        import importlib

        return getattr(importlib.import_module(located), target, None)
    import pydoc

    return pydoc.locate(target)


def _resolved_args(parser: Any, config_id: str, raw: dict, where: str) -> dict:
    args = {}
    for key in raw:
        if key in _IGNORED_ARGS:
            continue
        try:
            args[key] = _plain(parser.get_parsed_content(f"{config_id}::{key}"))
        except TypeError as exc:
            raise SharingError(where, f"{config_id}::{key} is not plain data ({exc})", "use literal values") from exc
    return args


def _network_entry(parser: Any, config_file: Path) -> dict:
    from medseg.sharing.registry import NETWORKS, ArgumentError, check_network

    raw = parser.get("network_def")
    if not isinstance(raw, dict) or "_target_" not in raw:
        raise SharingError(config_file, "network_def is not a '_target_' component", "define it as one")
    cls = _class_of(raw["_target_"])
    names = [name for name, spec in NETWORKS.items() if spec.build() is cls]
    if not names:
        raise SharingError(
            config_file,
            f"network_def {raw['_target_']!r} has no registered medseg name, so it cannot be shared as data",
            f"use one of {', '.join(NETWORKS)}",
        )
    arguments = _resolved_args(parser, "network_def", raw, str(config_file))
    if arguments.get("deep_supervision"):
        arguments["deep_supervision"] = False  # training-only heads; inference uses the main output
    try:
        check_network(names[0], arguments)
    except ArgumentError as exc:
        raise SharingError(config_file, f"network_def: {exc}", "use plain registered arguments") from exc
    return {"name": names[0], "arguments": arguments}


def _step_of(cls_name: str, args: dict) -> dict | None:
    """A registered preprocessing step for a MONAI/medseg dictionary transform and its arguments."""
    if cls_name == "SqueezeSliced":
        return {"name": "squeeze_slice", "params": {}}
    if cls_name == "ScaleIntensityd" and args.get("factor") is None:
        return {"name": "scale_intensity", "params": {k: args[k] for k in ("minv", "maxv") if k in args}}
    if cls_name == "ScaleIntensityRanged":
        return {"name": "scale_intensity_range", "params": args}
    if cls_name == "ScaleIntensityRangePercentilesd":
        return {"name": "scale_intensity_range_percentiles", "params": {k: v for k, v in args.items() if k != "dtype"}}
    if cls_name == "NormalizeIntensityd":
        if args.get("subtrahend") is None and args.get("divisor") is None:
            return {"name": "z_score", "params": {k: args[k] for k in ("nonzero", "channel_wise") if k in args}}
        return {"name": "normalize_intensity", "params": {k: v for k, v in args.items() if k != "dtype"}}
    if cls_name == "Resized":
        return {"name": "resize", "params": args}
    if cls_name == "AntialiasedResized":
        return {"name": "resize", "params": {**args, "anti_aliasing_filter": "torch"}}
    return None


def _transform_entries(parser: Any, compose_id: str, config_file: Path) -> list[tuple[str, Any]]:
    """``(config id, raw transform)`` of a Compose: a list, or a sum of list ids (``$@load_transforms + @resize``).

    The bundles assemble their pipelines from named slots; each slot is read as raw config, never evaluated.
    """
    import re

    transforms = parser.get(f"{compose_id}::transforms")
    if isinstance(transforms, list):
        return [(f"{compose_id}::transforms::{i}", raw) for i, raw in enumerate(transforms)]
    slots = re.findall(r"@([\w#:]+)", transforms) if isinstance(transforms, str) else []
    rest = re.sub(r"@[\w#:]+", "", transforms[1:]).replace("+", "").strip() if slots else "x"
    if not isinstance(transforms, str) or not transforms.startswith("$") or rest:
        raise SharingError(config_file, f"{compose_id} is not a Compose of transforms", "define it as one")
    entries = []
    for slot in slots:
        slot_id = slot.replace("#", "::")
        items = parser.get(slot_id)
        if not isinstance(items, list):
            raise SharingError(config_file, f"{compose_id} uses {slot}, which is not a list", "define it as one")
        entries += [(f"{slot_id}::{i}", raw) for i, raw in enumerate(items)]
    return entries


def _preprocessing(parser: Any, config_file: Path) -> list[dict]:
    from medseg.sharing.registry import ArgumentError, check_step

    steps = []
    for config_id, raw in _transform_entries(parser, "preprocessing", config_file):
        cls = _class_of(raw.get("_target_")) if isinstance(raw, dict) else None
        name = getattr(cls, "__name__", str(raw.get("_target_") if isinstance(raw, dict) else raw))
        if name in _SKIPPED_PRE:
            continue  # reading, channels first, channel check and float32 are medseg predict's own
        known = name in _KNOWN_PRE
        step = _step_of(name, _resolved_args(parser, config_id, raw, str(config_file))) if known else None
        if step is None:
            raise SharingError(
                config_file,
                f"{config_id} ({name}) has no registered medseg preprocessing step, so it cannot be shared as data",
                f"use one of {', '.join(_KNOWN_PRE)}",
            )
        try:
            check_step(len(steps), step)
        except ArgumentError as exc:
            raise SharingError(config_file, f"{config_id} ({name}): {exc}", "use registered parameters") from exc
        steps.append(step)
    return steps


def _postprocessing(parser: Any, config_file: Path) -> dict:
    """Check the bundle's post-processing is softmax -> invert -> argmax (+ per-class component filters)."""
    classes: dict[str, dict] = {}
    seen = set()
    argmax = False
    for config_id, raw in _transform_entries(parser, "postprocessing", config_file):
        cls = _class_of(raw.get("_target_")) if isinstance(raw, dict) else None
        name = getattr(cls, "__name__", "?")
        seen.add(name)
        if name == "Invertd" and raw.get("transform") != "@preprocessing":
            raise SharingError(config_file, f"{config_id} inverts {raw.get('transform')!r}", "invert @preprocessing")
        if name in _SKIPPED_POST:
            continue
        if name == "ApplyPostprocessingd":  # the decision training chose: per-class filters in the manifest
            from medseg.postprocessing import load_decision

            try:
                decision = parser.get_parsed_content(f"{config_id}::decision")
            except BundleInputError:  # no checkpoint beside the configs, so no decision to record
                decision = None
            for label, ops in (load_decision(decision)["classes"] if decision is not None else {}).items():
                classes.setdefault(str(label), {}).update({op: True for op, on in ops.items() if on})
            continue
        args = _resolved_args(parser, config_id, raw, str(config_file)) if name in _KNOWN_POST else {}
        if name == "Activationsd" and args.get("softmax") and not args.get("sigmoid"):
            continue
        # medseg.transforms.ArgmaxLabelsd is AsDiscreted's argmax, computed faster: the same manifest step
        if name == "ArgmaxLabelsd" or (name == "AsDiscreted" and args.get("argmax") and not args.get("threshold")):
            argmax = True
            continue
        if name in ("KeepLargestConnectedComponentd", "FillHolesd") and args.get("applied_labels"):
            labels = args["applied_labels"]
            key = "largest_component" if name.startswith("Keep") else "fill_holes"
            for label in labels if isinstance(labels, list) else [labels]:
                classes.setdefault(str(label), {})[key] = True
            continue
        raise SharingError(
            config_file,
            f"{config_id} ({name} {args}) cannot be expressed in a manifest",
            "post-process with Activationsd(softmax), Invertd, AsDiscreted(argmax), "
            "KeepLargestConnectedComponentd/FillHolesd(applied_labels)",
        )
    if "Activationsd" not in seen or not argmax:
        raise SharingError(config_file, "postprocessing is not softmax + argmax", "add Activationsd and AsDiscreted")
    return {"classes": classes}


def _tta(parser: Any, config_file: Path) -> dict | None:
    """The inferer as manifest TTA: SimpleInferer is none; FlipTTAInferer's mirrors (and 90-degree turns)."""
    inferer = parser.get("inferer")
    inferer_cls = _class_of(inferer.get("_target_")) if isinstance(inferer, dict) else None
    name = getattr(inferer_cls, "__name__", "")
    if name == "SimpleInferer":
        return None
    if name == "FlipTTAInferer":
        tta = parser.get_parsed_content("inferer")
        inner = getattr(tta.inferer, "inferer", tta.inferer)  # medseg.runtime.AmpInferer: precision, not a step
        if not isinstance(inner, _class_of("SimpleInferer")):
            raise SharingError(config_file, "inferer::inferer must be SimpleInferer", "use SimpleInferer inside")
        views: dict[str, list] = {}
        if tta.flips:
            views["flips"] = [[0], [1], [0, 1]]
        if tta.rot90:
            views["rot90"] = [1, 2, 3]
        return views or None
    raise SharingError(
        config_file, f"inferer {inferer!r} cannot be expressed in a manifest", "use SimpleInferer or FlipTTAInferer"
    )


def derive_from_config(config: dict, metadata: dict, folder: Path, config_file: Path) -> dict:
    """The network, preprocessing, post-processing, input and labels of a trusted bundle's ``inference.json``.

    Args:
        config: the parsed ``inference.json`` (as shipped: ``bundle_root`` = ``.``).
        metadata: its ``metadata.json``.
        folder: the bundle folder (``bundle_root`` while resolving).
        config_file: the file named in messages.

    Raises:
        SharingError: anything that has no registered name or is not plain data (one line naming it).
    """
    from monai.bundle import ConfigParser

    from medseg.sharing.check import quiet_monai_bundle

    parser = ConfigParser(config)
    parser["bundle_root"] = str(folder)
    with quiet_monai_bundle():
        network = _network_entry(parser, config_file)
        preprocessing = _preprocessing(parser, config_file)
        postprocessing = _postprocessing(parser, config_file)
        tta = _tta(parser, config_file)
    fmt = metadata.get("network_data_format", {})
    image = fmt.get("inputs", {}).get("image", {})
    channel_def = fmt.get("outputs", {}).get("pred", {}).get("channel_def", {})
    labels = {str(k): str(v) for k, v in channel_def.items()}
    in_channels = network["arguments"].get("in_channels", image.get("num_channels", 1))
    return {
        "network": network,
        "input": {
            "num_channels": int(in_channels),
            "spatial_dims": 2,
            "channel_def": {str(k): str(v) for k, v in image.get("channel_def", {}).items()},
            "modality": str(image.get("modality", "")),
            "format": str(image.get("format", "")),
        },
        "preprocessing": preprocessing,
        "postprocessing": postprocessing,
        "labels": labels,
        "tta": tta,
    }
