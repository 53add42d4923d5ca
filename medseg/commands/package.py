"""``medseg package``: a self-contained, checked bundle (folder and .zip) with a model card, from a trained run."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

TTA_PRESETS = {
    "bundle": None,  # what the bundle's inference.json does (its inferer)
    "none": {},
    "flips": {"flips": [[0], [1]]},
    "flips+rot90": {"flips": [[0], [1], [0, 1]], "rot90": [1, 2, 3]},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="source bundle folder, e.g. bundles/isic_unet")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="MLflow run id (its best checkpoint is used), k-fold parent run, or checkpoint")
    source.add_argument(
        "--model", help="a registered MLflow model: models:/NAME/VERSION or models:/NAME@ALIAS (its training run)"
    )
    parser.add_argument("--out", required=True, help="folder to write <bundle>_v<version>/ and its .zip into")
    parser.add_argument("--version", default=None, help="X.Y.Z (default: the bundle's version, patch bumped)")
    parser.add_argument("--schema", default=None, help="metadata schema (default: bundles/schema/meta_schema.json)")
    parser.add_argument("--tracking_uri", default=None, help="MLflow store holding the run (default as for training)")
    parser.add_argument("--sign", default=None, metavar="KEY", help="sign manifest.json with this .key (medseg keys)")
    parser.add_argument(
        "--tta", choices=sorted(TTA_PRESETS), default="bundle",
        help="test-time augmentation recorded in the manifest (default: the bundle's own)"
    )
    parser.add_argument(
        "--postprocessing",
        default=None,
        metavar="JSON",
        help='per-class decision file: {"classes": {"1": {"largest_component": true, "fill_holes": false}}}',
    )
    parser.add_argument("--no_amp", action="store_true",
                        help="predict in fp32: no bf16/fp16 autocast (the manifest and the shipped inference.json)")
    parser.add_argument("--batch_size", type=int, default=8, help="images per forward pass at prediction")


def run(args: argparse.Namespace) -> int:
    from medseg.sharing.errors import SharingError
    from medseg.sharing.package import package

    started = time.perf_counter()
    try:
        postprocessing = _read_decision(args.postprocessing) if args.postprocessing else None
        run = args.run
        if args.model:  # the registry names a version; the package is built from the run that logged it
            import tempfile

            from medseg.tracking import resolve_model_checkpoint

            with tempfile.TemporaryDirectory(prefix="medseg-model-") as work:
                run = resolve_model_checkpoint(args.model, args.tracking_uri, work)[1].run_id
            print(f"{args.model}: logged by run {run}")
        result = package(
            args.bundle,
            run,
            args.out,
            version=args.version,
            schema=args.schema,
            tracking_uri=args.tracking_uri,
            sign=args.sign,
            tta=TTA_PRESETS[args.tta],
            postprocessing=postprocessing,
            amp=not args.no_amp,
            batch_size=args.batch_size,
        )
    except SharingError as exc:
        print(f"medseg package: {exc}", file=sys.stderr)
        return 2
    print(
        f"packaged version {result.version} in {time.perf_counter() - started:.1f}s: {result.folder} and {result.zip}"
    )
    print(f"check it with: medseg check-bundle {result.zip}")
    return 0


def _read_decision(path: str) -> dict:
    """The per-class post-processing decision (a JSON file; a top-level ``postprocessing`` key is looked through)."""
    from medseg.sharing.errors import SharingError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SharingError(path, f"cannot be read as JSON ({exc})", "pass the decision file as JSON") from exc
    data = data.get("postprocessing", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
        raise SharingError(path, "has no 'classes' object", 'write {"classes": {"1": {"largest_component": true}}}')
    import jsonschema

    from medseg.sharing.manifest import manifest_schema

    errors = list(jsonschema.Draft202012Validator(manifest_schema()["properties"]["postprocessing"]).iter_errors(data))
    if errors:
        at = "/".join(str(p) for p in errors[0].absolute_path)
        raise SharingError(
            path, f"at {at}: {errors[0].message}", 'per class: {"largest_component": bool, "fill_holes": bool}'
        )
    return data
