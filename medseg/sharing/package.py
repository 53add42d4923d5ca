"""``medseg package``: turn a bundle and a trained run into a self-contained, checked package and ``.zip``.

The shared model is ``manifest.json`` (data only, :mod:`medseg.sharing.manifest`) with safetensors weights (one per
fold for a k-fold run) and the sha256 of every file, optionally signed (:mod:`medseg.sharing.signing`); beside it,
for those who trust the sender, the MONAI bundle. The package holds what inference needs and nothing that runs more:
``configs/inference.json`` (with ``bundle_root`` set to ``.`` and unused imports removed), ``configs/metadata.json``
filled in from the run, ``configs/meta_schema.json`` (the schema it was verified against, so it can be verified
offline), ``configs/logging.conf`` when the bundle has one, ``models/model.pt`` (state dict) and ``models/model.ts``
(TorchScript) with their sha256 in the metadata, ``docs/README.md`` (the model card), ``docs/data_license.txt`` and
``LICENSE``. Training configs are left out: they import tracking and data code a colleague does not need.

Before the package is moved into place it must pass ``verify_metadata``, ``verify_net_in_out`` and
:func:`medseg.sharing.check.check_bundle`; a failure leaves nothing behind.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.sharing.errors import SharingError

if TYPE_CHECKING:
    from medseg.sharing.run_info import RunInfo

VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")
COPIED_CONFIGS = ("logging.conf",)
DEFAULT_DATA_LICENSE = (
    "The data this model was trained on is described in docs/README.md and configs/metadata.json "
    "('data_source'). Its licence is the one stated by that source; check it before any use beyond research.\n"
)


@dataclass
class PackageResult:
    """The package folder and its zip."""

    folder: Path
    zip: Path
    version: str


def bump_version(version: str) -> str:
    """``X.Y.Z`` -> ``X.Y.(Z+1)``; anything unparsable becomes ``0.1.0``."""
    if not VERSION_PATTERN.match(version or ""):
        return "0.1.0"
    major, minor, patch = (int(p) for p in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def _expression_names(config: Any) -> set[str]:
    """Every bare name the config's ``$`` expressions and dotted ``_target_`` values use (imports excluded)."""
    from medseg.sharing.check import _REFERENCE, _walk

    names: set[str] = set()
    for location, key, value in _walk(config):
        if location.startswith("imports") or not isinstance(value, str):
            continue
        if key == "_target_" and "." in value and not value.startswith("$"):
            names.add(value.split(".", 1)[0])
        elif value.startswith("$"):
            try:
                tree = ast.parse(_REFERENCE.sub("__local_refs", value[1:].strip()), mode="eval")
            except SyntaxError:
                continue  # check_bundle reports it
            names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return names


def prune_imports(config: dict) -> tuple[dict, list[str]]:
    """Drop ``imports`` entries whose module no expression uses (dead code a safety check would still flag).

    Returns:
        (the new config, the dropped entries).
    """
    used = _expression_names(config)
    kept, dropped = [], []
    for entry in config.get("imports", []):
        text = str(entry).lstrip("$").strip()
        try:
            statement = ast.parse(text).body[0]
        except (SyntaxError, IndexError):
            kept.append(entry)
            continue
        aliases = getattr(statement, "names", [])
        bound = {a.asname or a.name.split(".")[0] for a in aliases}
        (kept if bound & used or not isinstance(statement, ast.Import | ast.ImportFrom) else dropped).append(entry)
    new = dict(config)
    if "imports" in config:
        new["imports"] = kept
    return new, dropped


def _license_text() -> str:
    """The repository's LICENSE, else the Apache-2.0 text shipped with MONAI (medseg is Apache-2.0)."""
    repo_license = Path(__file__).resolve().parents[2] / "LICENSE"
    if repo_license.is_file():
        return repo_license.read_text()
    from importlib.metadata import distribution

    for file in distribution("monai").files or []:
        if file.name.upper().startswith("LICENSE"):
            return Path(file.locate()).read_text()
    return "Apache License 2.0: https://www.apache.org/licenses/LICENSE-2.0\n"


def _package_versions(config: dict, source: dict) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    required = dict(source.get("required_packages_version", {}))
    if "medseg" in json.dumps(config):
        required["medseg"] = version("medseg") if _installed("medseg") else required.get("medseg", "0.1.0")
    for name in list(required):
        try:
            required[name] = version(name)
        except PackageNotFoundError:
            pass  # keep the version the bundle recorded
    return required


def _installed(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


def _trained_decision(run_info: RunInfo, models: Path) -> dict | None:
    """The post-processing training chose for what the manifest ships, or None.

    A single run's decision lies beside its checkpoint (``ChoosePostprocessing``). A k-fold run's ensemble has the
    one ``medseg kfold`` chose on the folds' out-of-fold predictions, while ``models/model.pt`` (the MONAI bundle
    form: the best fold) keeps that fold's own. The checkpoint's own decision is copied to
    ``models/postprocessing.json``, where the bundle form's ``inference.json`` finds it beside ``model.pt``.
    """
    from medseg.postprocessing import DECISION_FILE, decision_beside, load_decision

    own = decision_beside(run_info.checkpoint)
    if own:
        shutil.copy(own, models / DECISION_FILE)
    chosen = run_info.postprocessing if run_info.folds else own
    return {"classes": load_decision(chosen)["classes"]} if chosen else None


def _build_network(config: dict, folder: Path) -> Any:
    from monai.bundle import ConfigParser

    parser = ConfigParser(config)
    parser["bundle_root"] = str(folder)
    return parser.get_parsed_content("network_def")


def _export_torchscript(network: Any, example: Any, path: Path) -> str:
    """Save TorchScript: scripted when the network scripts, else traced on an example input."""
    import warnings

    network.eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        return _script_or_trace(network, example, path)


def _script_or_trace(network: Any, example: Any, path: Path) -> str:
    import torch

    try:
        module, how = torch.jit.script(network), "scripted"
    except Exception:  # many encoders do not script; a trace of the fixed-size input is equivalent for inference
        with torch.no_grad():
            module, how = torch.jit.trace(network, example, check_trace=False), "traced"
    torch.jit.save(module, str(path))
    return how


def _quiet(func, *args, **kwargs):
    from medseg.sharing.check import quiet_monai_bundle

    with quiet_monai_bundle():
        return func(*args, **kwargs)


def package(
    bundle: str | Path,
    run: str,
    out: str | Path,
    version: str | None = None,
    schema: str | Path | None = None,
    tracking_uri: str | None = None,
    sign: str | Path | None = None,
    tta: dict | None = None,
    postprocessing: dict | None = None,
    amp: bool = True,
    batch_size: int = 8,
) -> PackageResult:
    """Package ``bundle`` with the weights of ``run`` into ``out/<name>_v<version>/`` and ``.zip``.

    Args:
        bundle: the source bundle folder (``bundles/<name>``).
        run: a checkpoint path or an MLflow run id (its best checkpoint artifact is used).
        out: the folder to write the package and zip into.
        version: the package version (``X.Y.Z``); default: the bundle's version with the patch bumped.
        schema: the metadata schema; default: the repository's ``bundles/schema/meta_schema.json``.
        tracking_uri: the MLflow store holding ``run``.
        sign: an Ed25519 private key (``medseg keys new``) to sign ``manifest.json`` with.
        tta: the manifest's test-time augmentation (``{"flips": [[0], [1]], "rot90": [1]}``); None: none.
        postprocessing: the per-class decision (``{"classes": {"1": {"largest_component": true}}}``), e.g. from
            the run's post-processing evaluation; None: the bundle's own (usually none).
        amp: allow bf16/fp16 autocast at prediction where the hardware supports it. False also sets the shipped
            ``inference.json``'s ``amp`` to false, so both runners predict in fp32.
        batch_size: images per forward pass at prediction.

    Returns:
        the package folder and zip.

    Raises:
        SharingError: a bad bundle, run, checkpoint, version or output folder, or a package that fails its checks.
    """
    import monai
    import numpy
    import torch

    from medseg.sharing.archive import make_zip
    from medseg.sharing.check import REPO_SCHEMA, check_bundle, sha256_file
    from medseg.sharing.manifest import MANIFEST_NAME, SIGNATURE_NAME
    from medseg.sharing.model_card import cross_validation, learning_curve, render, split_metrics
    from medseg.sharing.run_info import resolve_run, state_dict_of
    from medseg.sharing.signing import sign_manifest

    bundle, out = Path(bundle), Path(out)
    for rel in ("configs/inference.json", "configs/metadata.json"):
        if not (bundle / rel).is_file():
            raise SharingError(bundle, f"has no {rel}", "pass a bundle folder such as bundles/isic_unet")
    if sign and not Path(sign).is_file():
        raise SharingError(sign, "signing key not found", "make one with 'medseg keys new --out DIR'")
    schema_file = Path(schema) if schema else REPO_SCHEMA
    if not schema_file.is_file():
        raise SharingError(schema_file, "metadata schema not found", "pass --schema bundles/schema/meta_schema.json")
    source_meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    if version is not None and not VERSION_PATTERN.match(version):
        raise SharingError(version, "is not a version X.Y.Z", "pass e.g. --version 1.0.0")
    version = version or bump_version(str(source_meta.get("version", "")))
    name = f"{bundle.resolve().name}_v{version}"
    target, zip_path = out / name, out / f"{name}.zip"
    for path in (target, zip_path):
        if path.exists():
            raise SharingError(path, "already exists", "choose another --out or --version")
    try:
        out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out))
    except OSError as exc:
        raise SharingError(
            out, f"cannot be written ({exc.strerror or exc})", "choose a folder you can write to"
        ) from exc
    staging = work / name
    try:
        run_info = resolve_run(run, work_dir=work / "run", tracking_uri=tracking_uri)
        (staging / "configs").mkdir(parents=True)
        (staging / "models").mkdir()
        (staging / "docs").mkdir()

        config = json.loads((bundle / "configs" / "inference.json").read_text())
        config["bundle_root"] = "."
        if not amp and "amp" in config:
            config["amp"] = False
        config, _ = prune_imports(config)
        (staging / "configs" / "inference.json").write_text(json.dumps(config, indent=4) + "\n")
        for extra in COPIED_CONFIGS:
            if (bundle / "configs" / extra).is_file():
                shutil.copy2(bundle / "configs" / extra, staging / "configs" / extra)
        shutil.copy2(schema_file, staging / "configs" / "meta_schema.json")

        network = _build_network(config, staging)
        folds = run_info.folds or [("model", run_info.checkpoint)]
        states = {name: _fitting_state(network, checkpoint, bundle) for name, checkpoint in folds}
        network.load_state_dict(state_dict_of(run_info.checkpoint))
        network.eval()
        torch.save(network.state_dict(), staging / "models" / "model.pt")
        fmt = source_meta.get("network_data_format", {})
        image = fmt.get("inputs", {}).get("image", {})
        example = torch.rand(
            1, int(image.get("num_channels", 1)), *[int(s) for s in image.get("spatial_shape", [64, 64])]
        )
        how = _export_torchscript(network, example, staging / "models" / "model.ts")

        metadata = dict(source_meta)
        metadata["version"] = version
        what = (
            f"weights from MLflow run {run_info.run_id}"
            if run_info.has_run
            else f"weights from {run_info.checkpoint.name}"
        )
        metadata["changelog"] = {
            version: f"packaged on {date.today().isoformat()}; {what}",
            **source_meta.get("changelog", {}),
        }
        metadata["monai_version"] = monai.__version__
        metadata["pytorch_version"] = torch.__version__.split("+")[0]
        metadata["numpy_version"] = numpy.__version__
        metadata["required_packages_version"] = _package_versions(config, source_meta)
        metadata["network_data_format"] = fmt
        metadata.setdefault("intended_use", "Research only; not for clinical use.")
        if run_info.has_run:
            grouped = split_metrics(run_info.metrics)
            metadata["performance"] = {split: values for split, values in grouped.items() if values}
            metadata["training_run"] = {"mlflow_run_id": run_info.run_id, "run_name": run_info.run_name}
        else:
            metadata["performance"] = "not available: packaged from a checkpoint without its MLflow run"
        if run_info.fold_scores:
            performance = metadata["performance"] if isinstance(metadata["performance"], dict) else {}
            metadata["performance"] = {**performance, "cross_validation": cross_validation(run_info.fold_scores)}
        if run_info.is_ensemble:
            metadata["ensemble"] = (
                f"manifest.json averages the softmax of {len(run_info.folds)} fold models; the MONAI bundle's "
                f"models/model.pt is the best single fold ({run_info.checkpoint.name})"
            )
        metadata["torchscript"] = how
        metadata["model_sha256"] = {rel: sha256_file(staging / rel) for rel in ("models/model.pt", "models/model.ts")}
        (staging / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=4) + "\n")

        if postprocessing is None:
            postprocessing = _trained_decision(run_info, staging / "models")
            origin = "chosen on the folds' pooled out-of-fold validation predictions" if run_info.folds else (
                "chosen on the validation predictions of the checkpoint's epoch")
        else:
            origin = "given by the packager"
        curve = learning_curve(run_info.history, staging / "docs" / "learning_curves.png")
        overlays = []
        for i, png in enumerate(p for p in run_info.images if "overlay" in p.as_posix().lower()):
            if i < 4:
                shutil.copy2(png, staging / "docs" / f"example_{i + 1}.png")
                overlays.append(f"example_{i + 1}.png")
        data_license = bundle / "docs" / "data_license.txt"
        license_text = data_license.read_text() if data_license.is_file() else DEFAULT_DATA_LICENSE
        (staging / "docs" / "data_license.txt").write_text(license_text)
        card = render(
            metadata,
            run_info,
            name,
            curve="learning_curves.png" if curve else None,
            overlays=overlays,
            data_license=license_text,
            postprocessing=postprocessing,
            postprocessing_origin=origin,
        )
        (staging / "docs" / "README.md").write_text(card)
        bundle_license = bundle / "LICENSE"
        (staging / "LICENSE").write_text(bundle_license.read_text() if bundle_license.is_file() else _license_text())

        _verify(staging)
        manifest = build_manifest(
            config, metadata, staging, states, run_info, tta=tta, postprocessing=postprocessing, amp=amp,
            batch_size=batch_size, source_config=bundle / "configs" / "inference.json",
        )  # fmt: skip
        _check_manifest_matches(network, staging, manifest, example)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if sign:
            sign_manifest(staging / MANIFEST_NAME, sign, staging / SIGNATURE_NAME)
        report = check_bundle(staging, schema=staging / "configs" / "meta_schema.json")
        if not report.passed:
            problems = "\n  ".join(report.problems())
            raise SharingError(
                bundle,
                f"the package would fail 'medseg check-bundle':\n  {problems}\n",
                "remove those entries from the bundle's inference.json",
            )
        staging.rename(target)
        make_zip(target, zip_path)
    except BaseException:
        if target.exists() and not zip_path.exists():
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return PackageResult(folder=target, zip=zip_path, version=version)


def _fitting_state(network: Any, checkpoint: Path, bundle: Path) -> dict:
    """The weights of ``checkpoint`` (weights-only), checked to fit ``network`` strictly."""
    from medseg.bundle.checkpoint import mismatch_summary
    from medseg.sharing.run_info import state_dict_of

    state = state_dict_of(checkpoint)
    problem = mismatch_summary(network, state)
    if problem:
        raise SharingError(
            checkpoint,
            f"does not fit the network of {bundle}/configs/inference.json ({problem})",
            "package it with the bundle it was trained with",
        )
    return state


def build_manifest(
    config: dict,
    metadata: dict,
    staging: Path,
    states: dict[str, dict],
    run_info: Any,
    tta: dict | None = None,
    postprocessing: dict | None = None,
    amp: bool = True,
    batch_size: int = 8,
    source_config: Path | None = None,
) -> dict:
    """Write the safetensors weights and return the validated manifest (``files`` hashes every other file).

    Args:
        config: the shipped ``inference.json``.
        metadata: the packaged ``metadata.json``.
        staging: the package folder being written.
        states: weight-file stem -> state dict (``model``, or ``fold0``, ``fold1``, ... for a k-fold run).
        run_info: the run the weights come from.
        tta, postprocessing, amp, batch_size: see :func:`package`.
        source_config: the file named in messages.
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    import monai
    import torch
    from safetensors.torch import save_file

    from medseg.sharing.manifest import FORMAT, derive_from_config, hash_files, validate_manifest

    derived = derive_from_config(config, metadata, staging, source_config or staging / "configs" / "inference.json")
    derived_tta = derived.pop("tta")
    tta = derived_tta if tta is None else tta  # the bundle's own TTA unless the packager chose
    if postprocessing:
        derived["postprocessing"] = postprocessing
    weights = []
    for name, state in states.items():
        rel = f"models/{name}.safetensors"
        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(staging / rel))
        entry = {"file": rel, "format": "safetensors", "name": name}
        if name in run_info.fold_scores:
            entry["validation_score"] = float(run_info.fold_scores[name])
        weights.append(entry)
    versions = {"monai": monai.__version__, "torch": torch.__version__.split("+")[0]}
    for package_name in ("medseg", "safetensors", "numpy"):
        try:
            versions[package_name] = installed(package_name)
        except PackageNotFoundError:
            pass
    inference: dict[str, Any] = {"activation": "softmax", "amp": bool(amp), "batch_size": int(batch_size)}
    if tta:
        inference["tta"] = tta
    training = {"mlflow_run_id": run_info.run_id, "run_name": run_info.run_name} if run_info.has_run else {}
    if run_info.datasets:
        training["datasets"] = run_info.datasets
    manifest = {
        "format": FORMAT,
        "name": str(metadata.get("name", staging.name)),
        "version": metadata["version"],
        "task": str(metadata.get("task", "")),
        "description": str(metadata.get("description", "")),
        "intended_use": str(metadata.get("intended_use", "Research only; not for clinical use.")),
        "authors": str(metadata.get("authors", "")),
        "data_license": str(metadata.get("data_license", "see docs/data_license.txt")),
        **derived,
        "weights": weights,
        "inference": inference,
        "versions": versions,
        "training": {k: v for k, v in training.items() if v},
        "performance": metadata["performance"] if isinstance(metadata.get("performance"), dict) else {},
    }
    if len(weights) > 1:
        manifest["ensemble"] = "mean_softmax"
    manifest["files"] = hash_files(staging)
    return validate_manifest(manifest, source_config or "manifest.json")


def _check_manifest_matches(network: Any, staging: Path, manifest: dict, example: Any) -> None:
    """The network the manifest builds must compute what the bundle's network computes (same weights)."""
    import torch

    from medseg.sharing.shared_model import load_shared_model

    single = dict(manifest, weights=[w for w in manifest["weights"] if w["file"] == manifest["weights"][0]["file"]])
    model = load_shared_model(staging, single)
    state = model.networks[0].state_dict()
    network.load_state_dict(state)
    with torch.no_grad():
        if not torch.allclose(network(example), model.networks[0](example), atol=1e-5):
            raise SharingError(staging / "manifest.json", "its network does not reproduce the bundle's network")


def _verify(folder: Path) -> None:
    """``verify_metadata`` against the packaged schema and ``verify_net_in_out``, offline, on CPU."""
    from monai.bundle import verify_metadata, verify_net_in_out

    meta, config = folder / "configs" / "metadata.json", folder / "configs" / "inference.json"
    try:
        _quiet(verify_metadata, meta_file=str(meta), filepath=str(folder / "configs" / "meta_schema.json"))
    except Exception as exc:  # ValueError from the schema, or a missing 'schema' key
        raise SharingError(meta, f"does not satisfy the schema: {exc}", "fix the bundle's metadata.json") from exc
    try:
        _quiet(
            verify_net_in_out,
            net_id="network_def",
            meta_file=str(meta),
            config_file=str(config),
            device="cpu",
            bundle_root=str(folder),
        )
    except Exception as exc:  # shape or dtype mismatch between network and metadata
        raise SharingError(config, f"fails verify_net_in_out: {exc}", "fix network_data_format or the network") from exc
