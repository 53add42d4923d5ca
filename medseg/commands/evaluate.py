"""``medseg evaluate``: score a folder of predicted masks against ground truth, the way a challenge scorer does.

Ground truth is a ``data_prep`` datalist (case ids, images, spacing and annotated classes come from its
items) or a folder of masks (case id = file name without extension and without a ``_segmentation``,
``_mask`` or ``_gt`` suffix). Predictions are matched by case id the same way (``_pred`` and ``_seg``
suffixes allowed). The report (``per_case.csv``, ``summary.json``, ``report.html``, ``report.md``) is written
into a staging folder and renamed into ``--out`` only when everything succeeded.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii.gz", ".nii")


class EvaluateError(ValueError):
    """Bad input to ``medseg evaluate``; the message names the case or file and the fix."""


@dataclass
class GroundTruthCase:
    case_id: str
    label: Path
    image: Path | None = None
    spacing: tuple[float, float] | None = None
    annotated: list[int] | None = None
    patient: str | None = None  # group_id
    phase: str | None = None  # ED / ES (cardiac cine)
    slice: int | None = None
    slice_thickness: float | None = None  # distance between slice centres (mm)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="folder of predicted masks (PNG or NIfTI), named by case id")
    parser.add_argument("--gt", required=True, help="a data_prep datalist.json, or a folder of ground-truth masks")
    parser.add_argument("--out", required=True, help="report folder (replaced if it holds a previous report)")
    parser.add_argument("--section", default="validation", help="datalist section to score (default: validation)")
    parser.add_argument(
        "--labels", help="label names for a ground-truth folder, e.g. '0=background,1=lesion' (default: datalist's)"
    )
    parser.add_argument("--images", help="folder of images named by case id, for overlays (ground-truth folder only)")
    parser.add_argument(
        "--merge", action="append", default=[], metavar="NAME=A+B", help="merged class, e.g. malignant=bcc+mel"
    )
    parser.add_argument(
        "--surface_distances",
        "--hd95",
        dest="surface_distances",
        choices=("auto", "yes", "no"),
        default="auto",
        help="compute HD95 and ASSD (slower); auto: for cardiac label names",
    )
    parser.add_argument(
        "--spacing", type=float, nargs=2, metavar=("ROW_MM", "COL_MM"), help="pixel spacing where none is recorded"
    )
    parser.add_argument("--iou_threshold", type=float, default=0.65, help="thresholded / class-level Jaccard cut")
    parser.add_argument("--examples", type=int, default=3, help="number of best and of worst cases to show")
    parser.add_argument(
        "--allow_missing", action="store_true", help="score the cases that have a prediction and list the others"
    )
    parser.add_argument(
        "--slice_thickness",
        type=float,
        metavar="MM",
        help="distance between short-axis slices (mm) for the cardiac volumes, where the items record none",
    )


def parse_labels(text: str) -> list[str]:
    """``'0=background,1=lesion'`` -> ``['background', 'lesion']``; values must be 0..C-1, each once."""
    names: dict[int, str] = {}
    for part in text.split(","):
        value, sep, name = part.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise EvaluateError(f"--labels {text!r}: write it as '0=background,1=lesion'")
        names[int(value)] = name.strip()
    if sorted(names) != list(range(len(names))) or len(names) < 2:
        raise EvaluateError(f"--labels {text!r}: values must be 0..C-1 with at least two classes")
    return [names[v] for v in range(len(names))]


def _labels_from_datalist(labels: dict, where: Path) -> list[str]:
    try:
        values = sorted(int(k) for k in labels)
    except ValueError as exc:
        raise EvaluateError(f"{where}: 'labels' keys must be label values ('0', '1', ...)") from exc
    if values != list(range(len(values))):
        raise EvaluateError(f"{where}: 'labels' must cover 0..C-1, got {values}")
    return [str(labels[str(v)]) for v in values]


def ground_truth_cases(args: argparse.Namespace) -> tuple[list[GroundTruthCase], list[str]]:
    """The cases to score and the label names, from a datalist or a folder."""
    from medseg.io import find_masks

    gt = Path(args.gt)
    if gt.is_file():
        from medseg.data import load_datalist, read_datalist

        labels = _labels_from_datalist(read_datalist(gt)["labels"], gt)
        if args.labels and parse_labels(args.labels) != labels:
            raise EvaluateError(f"--labels {args.labels!r} differ from the datalist's labels {labels}; drop --labels")
        cases, seen = [], set()
        for item in load_datalist(gt, args.section, require_label=True):
            case_id = str(item.get("case_id") or Path(item["label"]).name.split(".")[0])
            if case_id in seen:
                raise EvaluateError(f"{gt}: case id {case_id!r} appears twice in {args.section!r}; regenerate it")
            seen.add(case_id)
            spacing = item.get("spacing")
            thickness = item.get("slice_thickness") or (spacing[2] if spacing and len(spacing) == 3 else None)
            cases.append(
                GroundTruthCase(
                    case_id=case_id,
                    label=Path(item["label"]),
                    image=Path(item["image"]) if isinstance(item.get("image"), str) else None,
                    spacing=(float(spacing[0]), float(spacing[1])) if spacing else None,
                    annotated=[int(v) for v in item["annotated"]] if item.get("annotated") is not None else None,
                    patient=str(item["group_id"]) if item.get("group_id") is not None else None,
                    phase=str(item["phase"]).upper() if item.get("phase") else None,
                    slice=int(item["slice"]) if item.get("slice") is not None else None,
                    slice_thickness=float(thickness) if thickness else None,
                )
            )
        return cases, labels
    if not gt.exists():
        raise EvaluateError(f"{gt}: --gt not found; give a datalist.json or a folder of ground-truth masks")
    if not args.labels:
        raise EvaluateError(f"{gt}: a ground-truth folder needs --labels, e.g. --labels 0=background,1=lesion")
    labels = parse_labels(args.labels)
    images = _find_images(Path(args.images)) if args.images else {}
    cases = [GroundTruthCase(cid, path, images.get(cid)) for cid, path in find_masks(gt, what="ground truth").items()]
    return cases, labels


def _find_images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluateError(f"{folder}: --images folder not found")
    found = {}
    for path in sorted(folder.iterdir()):
        lower = path.name.lower()
        for ext in IMAGE_EXTENSIONS:
            if lower.endswith(ext):
                found.setdefault(path.name[: -len(ext)], path)
                break
    return found


def read_image(path: Path | None):
    """An image as a numpy array for overlays (None when absent or unreadable: overlays then use a grey canvas)."""
    import numpy as np

    if path is None or not path.is_file():
        return None
    try:
        if path.name.lower().endswith((".nii", ".nii.gz")):
            import nibabel as nib

            return np.squeeze(np.asarray(nib.load(str(path)).dataobj))
        from PIL import Image

        with Image.open(path) as img:
            return np.asarray(img.convert("RGB") if img.mode not in ("L", "RGB") else img)
    except Exception:  # an overlay is not worth failing the evaluation for
        return None


def load_pair(case: GroundTruthCase, pred_path: Path, num_classes: int):
    """Read and check a case's ground truth and prediction; returns (gt, pred, spacing from a NIfTI header)."""
    from medseg.io import MaskError, check_label_values, read_mask

    try:
        gt, gt_spacing = read_mask(case.label)
        pred, pred_spacing = read_mask(pred_path)
    except MaskError as exc:
        raise EvaluateError(f"case {case.case_id}: {exc}") from exc
    gt = check_label_values(gt, num_classes, f"case {case.case_id}: ground truth {case.label}")
    pred = check_label_values(pred, num_classes, f"case {case.case_id}: prediction {pred_path}")
    if pred.shape != gt.shape:
        raise EvaluateError(
            f"case {case.case_id}: prediction {pred_path} is {pred.shape[0]}x{pred.shape[1]} but its ground truth "
            f"{case.label} is {gt.shape[0]}x{gt.shape[1]} (height x width); predict at the ground truth's size"
        )
    return gt, pred, gt_spacing or pred_spacing


def evaluate(args: argparse.Namespace) -> dict:
    """Run the evaluation and write the report; returns the summary. Raises on bad input, before writing."""
    from medseg.io import PRED_SUFFIXES, find_masks
    from medseg.metrics import score_label_maps
    from medseg.reports import write_report

    cases, labels = ground_truth_cases(args)
    num_classes = len(labels)
    preds = find_masks(args.pred, PRED_SUFFIXES, what="prediction")
    missing = [c.case_id for c in cases if c.case_id not in preds]
    scored = [c for c in cases if c.case_id in preds]
    if not scored:
        raise EvaluateError(
            f"{args.pred}: no prediction matches a ground-truth case id (predictions: {list(preds)[:3]}, "
            f"ground truth: {[c.case_id for c in cases[:3]]}); name predictions <case id>[_pred].png or .nii.gz"
        )
    if missing and not args.allow_missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise EvaluateError(
            f"{args.pred}: {len(missing)} of {len(cases)} cases have no prediction: {shown}; "
            "predict them, or pass --allow_missing to score the others and list these in the report"
        )
    gts, pred_maps, spacings = [], [], []
    for case in scored:
        gt, pred, header_spacing = load_pair(case, preds[case.case_id], num_classes)
        gts.append(gt.astype("uint8" if num_classes <= 256 else "int32"))
        pred_maps.append(pred.astype(gts[-1].dtype))
        spacing = case.spacing or header_spacing or (tuple(args.spacing) if args.spacing else None)
        spacings.append(spacing)
    surface = {"auto": "auto", "yes": True, "no": False}[args.surface_distances]
    try:
        scores = score_label_maps(
            [c.case_id for c in scored],
            pred_maps,
            gts,
            labels,
            spacings=spacings,
            annotated=[c.annotated for c in scored],
            merged=args.merge,
            surface_distances=surface,
            iou_threshold=args.iou_threshold,
            missing=missing,
        )
    except ValueError as exc:
        raise EvaluateError(str(exc)) from exc
    index = {c.case_id: i for i, c in enumerate(scored)}

    def load_case(case_id: str):
        i = index[case_id]
        return read_image(scored[i].image), gts[i], pred_maps[i]

    case_info = {
        c.case_id: {
            "prediction": str(preds[c.case_id]),
            "ground_truth": str(c.label),
            "spacing": "" if spacings[i] is None else f"{spacings[i][0]:g}x{spacings[i][1]:g}",
        }
        for i, c in enumerate(scored)
    }
    context = {"predictions": str(args.pred), "ground_truth": str(args.gt)}
    if Path(args.gt).is_file():
        context["section"] = args.section
    known = {c.case_id for c in cases}
    unmatched = [case_id for case_id in preds if case_id not in known]
    if unmatched:  # e.g. predictions of every split scored against one datalist section: noted, not scored
        context["predictions_without_ground_truth"] = len(unmatched)
    clinical = clinical_readout_of(cases, scored, gts, pred_maps, spacings, labels, args.slice_thickness, context)
    return write_report(
        args.out, scores, load_case, case_info, n_examples=args.examples, context=context, clinical=clinical
    )


def clinical_readout_of(cases, scored, gts, pred_maps, spacings, labels, slice_thickness, context):
    """The cardiac read-out (volumes, EF, mass, agreement) when the datalist has ED/ES phases; else None.

    Every ``(patient, phase)`` stack of the datalist section is expected whole: slices without a prediction (with
    ``--allow_missing``) leave that frame's predicted volumes out, with a note, rather than under-counting them.
    """
    if not any(c.phase in ("ED", "ES") and c.patient is not None and c.slice is not None for c in cases):
        return None
    from medseg.clinical import CardiacLabels, SliceMask, clinical_readout

    structures = CardiacLabels.from_names(labels)
    if structures is None:
        context["clinical"] = "not computed: the labels do not name right ventricle, myocardium and left ventricle"
        return None
    expected: dict[tuple[str, str], set[int]] = {}
    for c in cases:
        if c.phase and c.patient is not None and c.slice is not None:
            expected.setdefault((c.patient, c.phase), set()).add(c.slice)
    predicted, expert = [], []
    for i, c in enumerate(scored):
        if not (c.phase and c.patient is not None and c.slice is not None):
            continue
        thickness = c.slice_thickness or slice_thickness
        for masks, out in ((pred_maps, predicted), (gts, expert)):
            out.append(SliceMask(c.patient, c.phase, c.slice, masks[i], spacings[i], thickness, c.annotated))
    return clinical_readout(predicted, expert, structures, expected)


def run(args: argparse.Namespace) -> int:
    from medseg.data import DatalistError
    from medseg.io import MaskError
    from medseg.reports import ReportError

    started = time.perf_counter()
    try:
        summary = evaluate(args)
    except (EvaluateError, MaskError, DatalistError, ReportError) as exc:
        print(f"medseg evaluate: error: {exc}", file=sys.stderr)
        return 2
    metrics = summary["metrics"]
    shown = ("mean_dice", "mean_iou", "jaccard_mean", "thresholded_jaccard", "PixSim", "N_90", "mean_hd95")
    print("  ".join(f"{k} {metrics[k]:.4f}" for k in shown if metrics.get(k) is not None))
    if summary["missing_cases"]:
        print(f"missing predictions (not scored): {', '.join(summary['missing_cases'])}")
    clinical = summary.get("clinical")
    if clinical and clinical["agreement"]:
        shown = [(i, r) for i, r in clinical["agreement"].items() if r["n"] and i in ("LV_EF", "RV_EF", "LV_mass")]
        print("clinical MAE: " + "  ".join(f"{i} {r['mae']:.2f} {r['unit']} (n={r['n']})" for i, r in shown))
    if clinical:
        print(f"clinical indices of {clinical['n_patients']} patients in {args.out}/clinical.csv")
        for patient, entry in clinical["patients"].items():
            for source in ("predicted", "expert"):
                for note in entry.get(f"{source}_notes", []):
                    print(f"clinical: patient {patient} ({source}) {note}")
    print(f"scored {summary['n_cases']} cases in {time.perf_counter() - started:.1f}s; report in {args.out}")
    return 0
