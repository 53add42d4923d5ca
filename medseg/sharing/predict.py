"""``medseg predict``: segment a colleague's images with a shared model, after checking the package.

The model is built from the package's ``manifest.json`` and medseg's own code only
(:mod:`medseg.sharing.shared_model`); the bundle's MONAI configs run only with ``--trust``
(:mod:`medseg.sharing.inference`). Masks are written in each input's format and geometry (see
:mod:`medseg.sharing.inputs`), with an optional overlay PNG per image and ``findings.csv``: per image (and per slice
of a volume) the area of every structure in pixels, in mm^2 when the spacing is known, and for a volume the volume
in mL. Images go through the network ``--batch_size`` at a time, the next batch read while the network runs
(:func:`medseg.runtime.batched_inference`); the masks are those of one image at a time. Everything is written into
a staging folder that becomes ``--output`` only at the end, so a failed run leaves nothing half-written. An
unreadable input among many, in a batch or not, is skipped and listed in ``skipped.csv``; the rest are
processed. A DICOM series also gets a DICOM Segmentation (:mod:`medseg.sharing.dicom_seg`). When the inputs are
the ED and ES frames of cardiac patients (an ACDC-style folder, or a datalist whose items carry patient and phase:
:mod:`medseg.sharing.cardiac`), ``clinical.csv`` gives each patient's indices computed from the predicted masks.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.sharing.errors import SharingError
from medseg.sharing.inputs import discover

FINDINGS_NAME = "findings.csv"
SKIPPED_NAME = "skipped.csv"
CLINICAL_NAME = "clinical.csv"
# label value -> overlay colour (RGB); background is not drawn
PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180), (70, 240, 240)]
PROGRESS_MIN_FILES = 4


@dataclass
class PredictResult:
    """What :func:`predict` wrote.

    Attributes:
        output: the output folder.
        rows: the rows of ``findings.csv``.
        skipped: ``(input, problem)`` for each input that could not be processed.
        clinical: each patient's :class:`medseg.clinical.PatientIndices` (written to ``clinical.csv``), None when
            the inputs are not cardiac frames or the model's labels do not name the cardiac structures.
        clinical_notes: why the indices were not computed, or which cardiac inputs could not be used (one line
            each); the per-patient notes are in ``clinical``.
        runtime: which library ran the networks and why (one line each; see
            :func:`medseg.sharing.runtime.choose_backend`).
    """

    output: Path
    rows: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    clinical: list | None = None
    clinical_notes: list[str] = field(default_factory=list)
    runtime: list[str] = field(default_factory=list)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def prepare_output(output: str | Path, input_path: str | Path) -> tuple[Path, Path]:
    """Check the output folder and create a staging folder beside it.

    Args:
        output: the ``--output`` folder: new or empty, not the input folder nor inside it.
        input_path: the ``--input`` file or folder.

    Returns:
        (resolved output, staging folder).

    Raises:
        SharingError: the output is the input folder, inside it, not empty, or cannot be written.
    """
    output, input_path = Path(output).resolve(), Path(input_path).resolve()
    input_folder = input_path if input_path.is_dir() else input_path.parent
    if _is_within(output, input_folder):
        raise SharingError(
            output,
            f"is inside the input folder {input_folder}; predict never writes among its inputs",
            "choose an --output folder outside the input folder",
        )
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise SharingError(output, "exists and is not an empty folder", "choose a new or empty --output folder")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    except OSError as exc:
        raise SharingError(
            output, f"cannot be written ({exc.strerror or exc})", "choose a folder you can write to"
        ) from exc
    return output, staging


def _finish(staging: Path, output: Path) -> None:
    if output.exists():
        output.rmdir()  # empty, checked by prepare_output
    os.replace(staging, output)


def _overlay(rgb: Any, label_map: Any, path: Path) -> None:
    """Blend the label colours over an (H, W, 3) uint8 image and save a PNG."""
    import numpy as np
    from PIL import Image

    out = rgb.astype(np.float32)
    for value in np.unique(label_map):
        if value == 0:
            continue
        colour = np.array(PALETTE[int(value) % len(PALETTE)] if value < len(PALETTE) else (255, 255, 255))
        where = label_map == value
        out[where] = 0.55 * out[where] + 0.45 * colour
    Image.fromarray(out.clip(0, 255).astype(np.uint8)).save(path)


def _grey_to_rgb(slice2d: Any) -> Any:
    import numpy as np

    lo, hi = np.percentile(slice2d, [0.5, 99.5]) if slice2d.size else (0, 1)
    scaled = ((slice2d - lo) / (hi - lo if hi > lo else 1.0)).clip(0, 1) * 255
    return np.repeat(scaled.astype(np.uint8)[..., None], 3, axis=-1)


def _areas(label_map: Any, labels: dict[int, str], pixel_mm2: float | None) -> dict[str, Any]:
    import numpy as np

    row: dict[str, Any] = {}
    for value, name in labels.items():
        if value == 0:
            continue
        count = int(np.count_nonzero(label_map == value))
        row[f"{name}_area_px"] = count
        row[f"{name}_area_mm2"] = round(count * pixel_mm2, 3) if pixel_mm2 else ""
    return row


def _open_image(path: Path, rgb: bool = False) -> tuple[int, int, Any]:
    """``(width, height, RGB array or None)`` of an image file, read with PIL (only the header without ``rgb``).

    Raises:
        SharingError: the file is not an image PIL can read.
    """
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as img:
            width, height = img.size
            return width, height, np.asarray(img.convert("RGB")) if rgb else None
    except Exception as exc:  # PIL raises several types for a bad file
        raise SharingError(path, f"cannot be read as an image ({type(exc).__name__}: {exc})", "check the file") from exc


def _predict_images(model: Any, cases: list) -> Iterator[Any]:
    """The label map of each image case, in order, predicted ``model.batch_size`` images at a time.

    :func:`medseg.runtime.batched_inference` reads the next batch in a background thread while the network runs on
    this one, and makes each label map (``Invertd`` back to the image's size, argmax, post-processing) in a writer
    thread. The steps are the model's own (``prepare``, ``forward``, ``label_map``), as in its one-image
    ``segment``; only the number of images per forward pass differs. An image that fails (not an image, wrong
    channels, ...) yields its exception instead, and the others go on. A model without those steps yields None for
    every image: :func:`_segment_image` then runs its ``segment`` on that image.
    """
    from medseg.runtime import batched_inference

    if not all(hasattr(model, step) for step in ("prepare", "forward", "label_map")):
        yield from (None for _ in cases)
        return

    def load(item: dict) -> dict:
        _open_image(Path(item["image"]))  # a file that is not an image: the same one-line problem as one at a time
        return model.prepare(item, item["image"])

    outcomes = batched_inference(
        [{"image": str(case.files[0])} for case in cases],
        None,  # the model's forward runs its own network(s), TTA and autocast
        load,
        lambda data: {"label_map": model.label_map(data)},
        inferer=lambda images, _network: model.forward(images),
        device=model.device,
        batch_size=int(getattr(model, "batch_size", 8)),
        keep_going=True,
    )
    try:
        for _, result in outcomes:
            yield result["error"] if "error" in result else result["label_map"]
    finally:
        outcomes.close()  # stops the loading thread when predict stops early


def _segment_image(bundle, case, staging: Path, overlay: bool, clinical=None, label_map: Any = None) -> list[dict]:
    """Write one image's mask (and overlay) and return its ``findings.csv`` row.

    ``label_map`` is what :func:`_predict_images` gave for it: the label map, the exception that stopped it
    (raised here), or None (segmented here, one image at a time).
    """
    from medseg.sharing.inputs import write_png_mask

    if isinstance(label_map, BaseException):
        raise label_map
    path = case.files[0]
    width, height, rgb = _open_image(path, overlay)
    if label_map is None:
        label_map = bundle.segment({"image": str(path)}, str(path))
    if label_map.shape != (width, height):
        raise SharingError(path, f"the mask came out {label_map.shape[::-1]} instead of {(height, width)}")
    mask_path = staging / f"{case.name}_mask.png"
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    write_png_mask(label_map, mask_path, binary=max(bundle.labels) == 1)
    if overlay:
        _overlay(rgb, label_map.T, staging / f"{case.name}_overlay.png")
    row = {
        "input": str(path),
        "slice": "",
        "mask": mask_path.relative_to(staging).as_posix(),
        "height": height,
        "width": width,
        "spacing_mm": "",
    }
    if clinical is not None and case.cardiac is not None:
        # MONAI reads a PNG columns first; the datalist item's spacing is rows first
        clinical.add(case.cardiac, label_map.T, None, case.source)
    return [row | _areas(label_map, bundle.labels, None)]


def _segment_volume(bundle, case, staging: Path, overlay: bool, clinical=None) -> list[dict]:
    import numpy as np

    from medseg.sharing.inputs import read_dicom_series, read_nifti, slice_item, write_nifti_mask

    volume = read_nifti(case.files[0]) if case.kind == "nifti" else read_dicom_series(case.files)
    depth = volume.array.shape[-1]
    label_map = np.zeros(volume.array.shape, dtype=np.uint8)
    slices = [slice_item(volume, k, case.source) for k in range(depth)]
    for k, mask in enumerate(bundle.segment_many(slices, case.source)):
        label_map[..., k] = mask
    mask_path = staging / f"{case.name}_mask.nii.gz"
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    write_nifti_mask(label_map, volume, mask_path)
    if case.kind == "dicom":
        from medseg.sharing.dicom_seg import write_dicom_segs

        meta = bundle.metadata
        name, version = str(meta.get("name", "medseg model")), str(meta.get("version", "0"))
        try:
            stem = Path(case.name).name
            folder = (staging / case.name).parent
            write_dicom_segs(label_map, volume.datasets, bundle.labels, name, version, folder, stem)
        except SharingError as exc:  # the NIfTI mask and findings are still worth having; the row says why
            volume.notes.append(f"DICOM SEG not written: {exc.problem}")
    spacing = volume.spacing
    pixel_mm2 = spacing[0] * spacing[1] if spacing else None
    base = {
        "input": case.source,
        "mask": mask_path.relative_to(staging).as_posix(),
        "height": volume.array.shape[1],
        "width": volume.array.shape[0],
        "spacing_mm": "x".join(f"{s:g}" for s in spacing if s > 0) if spacing else "",
        "notes": "; ".join(volume.notes),
    }
    rows = []
    for k in range(depth):
        rows.append(
            base
            | {"slice": k if depth > 1 or not volume.squeeze else ""}
            | _areas(label_map[..., k], bundle.labels, pixel_mm2)
        )
        if overlay:
            suffix = f"_s{k:03d}" if depth > 1 else ""
            image = _grey_to_rgb(volume.array[..., k].T)
            _overlay(image, label_map[..., k].T, staging / f"{case.name}{suffix}_overlay.png")
    if depth > 1:
        total = base | {"slice": "all"} | _areas(label_map, bundle.labels, pixel_mm2)
        if spacing and spacing[2] > 0:
            voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
            for value, name in bundle.labels.items():
                if value:
                    total[f"{name}_volume_ml"] = round(int(np.count_nonzero(label_map == value)) * voxel_ml, 3)
        total["notes"] = "; ".join(volume.notes)
        rows.append(total)
    if clinical is not None and case.cardiac is not None:
        # a 2D file's header has no slice spacing (read_nifti fills in 1 mm): only its in-plane size is passed on
        header = None if spacing is None else spacing[:2] if volume.squeeze else spacing
        clinical.add(case.cardiac, label_map, header, case.source)
    return rows


def _write_csv(rows: list[dict], path: Path, labels: dict[int, str]) -> None:
    columns = ["input", "slice", "mask", "height", "width", "spacing_mm"]
    for value, name in labels.items():
        if value:
            columns += [f"{name}_area_px", f"{name}_area_mm2", f"{name}_volume_ml"]
    columns.append("notes")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def predict(
    bundle: str | Path,
    input_path: str | Path,
    output: str | Path,
    overlay: bool = False,
    device: str = "cpu",
    trust: bool = False,
    schema: str | Path | None = None,
    require_signed: bool = False,
    trusted_keys: str | Path | None = None,
    limits: Any = None,
    section: str | None = None,
    slice_thickness: float | None = None,
    batch_size: int | None = None,
    backend: str | None = None,
) -> PredictResult:
    """Check a package, segment every input and write masks, overlays, DICOM SEGs, ``findings.csv`` and, for
    cardiac frames, ``clinical.csv``.

    Without ``trust`` the model is built from ``manifest.json`` and medseg's own code only
    (:mod:`medseg.sharing.shared_model`); the package must pass :func:`medseg.sharing.check.check_bundle`
    (valid manifest, every file's sha256, the signature when there is one or ``require_signed``).
    With ``trust`` the bundle's own ``configs/inference.json`` runs (it is Python), with a warning.

    Args:
        bundle: a package folder or ``.zip``.
        input_path: an image, NIfTI file, DICOM series folder, a folder of them, or a ``data_prep`` datalist.json.
        output: a new or empty folder outside the input folder.
        overlay: also write an overlay PNG per image (per slice for volumes).
        device: ``cpu`` or ``cuda``.
        trust: run the bundle's own MONAI configs instead of its manifest.
        schema: the MONAI metadata schema for the check (defaults as in ``check_bundle``).
        require_signed: refuse a package that a key in ``trusted_keys`` has not signed.
        trusted_keys: a folder of the senders' ``*.pub`` keys.
        limits: :class:`medseg.sharing.archive.ExtractionLimits` for a zip.
        section: the datalist section to segment (default: every section); only for a datalist input.
        slice_thickness: distance between short-axis slices (mm) for the cardiac inputs that record none.
        batch_size: images (and a volume's slices) per forward pass; None: the manifest's ``inference.batch_size``
            (8 with ``trust``). Batches give the same masks as one image at a time.
        backend: ``auto``, ``torch`` or ``onnxruntime`` (:func:`medseg.sharing.runtime.choose_backend`); None:
            ``$MEDSEG_BACKEND``, default ``auto``. ``trust`` runs PyTorch.

    Returns:
        what was written and skipped.

    Raises:
        SharingError: a refused package (one line naming the file), output folder or input path; or every
            input failed.
    """
    from tqdm import tqdm

    from medseg.sharing.archive import open_bundle
    from medseg.sharing.cardiac import ClinicalCollector
    from medseg.sharing.check import check_bundle
    from medseg.sharing.runtime import choose_backend

    if require_signed and not trusted_keys:
        raise SharingError("--require_signed", "needs --trusted_keys DIR", "pass the folder of the senders' .pub keys")
    if slice_thickness is not None and not slice_thickness > 0:
        raise SharingError("--slice_thickness", f"must be a positive number of mm, got {slice_thickness}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise SharingError("--batch_size", f"must be a whole number of at least 1, got {batch_size}")
    if trust and backend == "onnxruntime":
        raise SharingError("--backend onnxruntime", "runs the package's manifest model, and --trust its configs",
                           "drop --trust, or use --backend torch")  # fmt: skip
    if not trust:
        choose_backend(backend, device, amp=True)  # a bad --backend or $MEDSEG_BACKEND is refused before any work
    cases = discover(input_path, section)
    clinical = ClinicalCollector.for_cases(cases, slice_thickness)
    output, staging = prepare_output(output, input_path)
    try:
        with open_bundle(bundle, limits) as folder, ExitStack() as cleanup:
            report = check_bundle(folder, schema=schema, trusted_keys=trusted_keys, require_signed=require_signed)
            loaded = _load(bundle, folder, report, trust, require_signed, device, backend)
            result = PredictResult(output=output)
            n_files = sum(len(c.files) for c in cases)
            bar = tqdm(cases, desc="segmenting", unit="input", disable=n_files < PROGRESS_MIN_FILES, file=sys.stderr)
            if batch_size is not None:
                loaded.batch_size = batch_size
            # closed when this block ends, also on an error: its loading and writer threads stop before the cleanup
            predicted = cleanup.enter_context(closing(_predict_images(loaded, [c for c in cases if c.kind == "image"])))
            for case in bar:
                try:
                    if case.kind == "image":
                        result.rows += _segment_image(loaded, case, staging, overlay, clinical, next(predicted))
                    else:
                        result.rows += _segment_volume(loaded, case, staging, overlay, clinical)
                except SharingError as exc:
                    result.skipped.append((case.source, str(exc)))
                except Exception as exc:  # one bad file must not stop the others; it is reported
                    result.skipped.append((case.source, f"{case.source}: {type(exc).__name__}: {exc}"))
            bar.close()
            result.runtime = loaded.runtime_notes() if hasattr(loaded, "runtime_notes") else []
        if not result.rows:
            details = "\n  ".join(problem for _, problem in result.skipped)
            raise SharingError(input_path, f"no input could be segmented:\n  {details}\n", "see the problems above")
        _write_csv(result.rows, staging / FINDINGS_NAME, loaded.labels)
        if clinical is not None:
            from medseg.clinical import write_indices_csv

            result.clinical, reason = clinical.indices(loaded.labels)
            result.clinical_notes = ([reason] if reason else []) + clinical.notes
            if result.clinical is not None:
                write_indices_csv(staging / CLINICAL_NAME, result.clinical)
        if result.skipped:
            with open(staging / SKIPPED_NAME, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["input", "problem"])
                writer.writerows(result.skipped)
        _finish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _refusal(bundle: str | Path, problems: list[str], fix: str) -> SharingError:
    """One line: the first problem (it names the file), how many more, and what to do."""
    more = f" (and {len(problems) - 1} more; 'medseg check-bundle' lists them)" if len(problems) > 1 else ""
    return SharingError(bundle, f"refused: {problems[0]}{more}", fix)


def _load(bundle: str | Path, folder: Path, report: Any, trust: bool, require_signed: bool, device: str,
          backend: str | None = None) -> Any:  # fmt: skip
    """The model to run: the manifest's (default) or, with ``trust``, the bundle's own configs."""
    from medseg.sharing.inference import load_inference_bundle
    from medseg.sharing.manifest import read_manifest
    from medseg.sharing.shared_model import load_shared_model

    fix = "ask the sender for a new package made by 'medseg package'"
    if require_signed and report.manifest_problems:
        raise _refusal(bundle, report.manifest_problems, fix)
    if trust:
        flagged = len(report.configs_flagged)
        print(
            f"warning: --trust: running {bundle}'s own configs/inference.json, which is Python and can do anything "
            f"your account can ({flagged} entries reach outside monai/torch/numpy/medseg; see 'medseg check-bundle')",
            file=sys.stderr,
        )
        return load_inference_bundle(folder, device=device)
    if not report.has_manifest:
        raise SharingError(
            bundle,
            "refused: no manifest.json, so the model exists only as MONAI configs, which are code",
            "ask for a package made by 'medseg package', or pass --trust only if you trust its sender",
        )
    if not report.passed:
        raise _refusal(bundle, report.problems(), fix)
    return load_shared_model(folder, read_manifest(folder), device=device, backend=backend)
