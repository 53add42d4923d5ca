"""``medseg predict``: segment images with a shared bundle (checked first; see ``medseg check-bundle``).

Cardiac inputs whose patient and phase are known (an ACDC-style folder, a ``data_prep`` datalist) also get
``clinical.csv``: the per-patient indices of the predicted masks (see ``docs/clinical.md``).
"""

from __future__ import annotations

import argparse
import sys
import time

from medseg.commands.limits import add_limit_arguments, limits_of

# RawDescriptionHelpFormatter keeps the epilog's lines as written
CLINICAL_HELP = """\
Cardiac read-out: clinical.csv (LV/RV EDV, ESV, SV, EF and LV mass per patient, computed from the
predicted masks, with a note for every index left out) is written when the inputs are the ED/ES frames
of known patients: an ACDC-style folder (patientXXX/Info.cfg naming the ED and ES frames, next to
patientXXX_frameNN.nii.gz volumes) or a data_prep datalist.json whose items carry group_id, phase and
slice. A plain folder of images says nothing about patients or phases: no clinical.csv then."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = CLINICAL_HELP + (f"\n\n{parser.epilog}" if parser.epilog else "")
    parser.add_argument("--bundle", required=True, help="bundle folder or .zip made by 'medseg package'")
    parser.add_argument(
        "--input",
        required=True,
        help="PNG/JPG image, NIfTI file, DICOM series folder, a folder of them, or a data_prep datalist.json",
    )
    parser.add_argument("--output", required=True, help="new or empty folder, outside the input folder")
    parser.add_argument("--overlay", action="store_true", help="also write an overlay PNG per image")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="run the bundle's own MONAI configs (Python: only for a sender you trust) instead of its manifest",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime"),
        default=None,
        help="what runs the network (default: $MEDSEG_BACKEND or auto: ONNX Runtime on a CPU without bf16 where it "
        "is installed, medseg[onnx], and faster on the first batch; its export is cached in $MEDSEG_HOME/cache/onnx)",
    )
    parser.add_argument("--schema", default=None, help="metadata schema (default: the repository's or the bundle's)")
    parser.add_argument("--require_signed", action="store_true", help="refuse a package no trusted key signed")
    parser.add_argument("--trusted_keys", default=None, help="folder of the senders' .pub keys (medseg keys new)")
    parser.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="images per forward pass (default: the package's, 8 with --trust); the masks do not depend on it",
    )
    parser.add_argument(
        "--section",
        choices=("training", "validation", "testing"),
        default=None,
        help="datalist section to segment (datalist.json input only; default: every section)",
    )
    parser.add_argument(
        "--slice_thickness",
        type=float,
        metavar="MM",
        help="distance between short-axis slices (mm) for the clinical indices, where the inputs record none",
    )
    add_limit_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from medseg.sharing.errors import SharingError
    from medseg.sharing.predict import CLINICAL_NAME, FINDINGS_NAME, SKIPPED_NAME, predict

    started = time.perf_counter()
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        result = predict(
            args.bundle,
            args.input,
            args.output,
            overlay=args.overlay,
            device=device,
            trust=args.trust,
            schema=args.schema,
            require_signed=args.require_signed,
            trusted_keys=args.trusted_keys,
            limits=limits_of(args),
            batch_size=args.batch_size,
            section=args.section,
            slice_thickness=args.slice_thickness,
            backend=args.backend,
        )
    except SharingError as exc:
        print(f"medseg predict: {exc}", file=sys.stderr)
        return 2
    inputs = len({row["input"] for row in result.rows})
    print(
        f"segmented {inputs} input(s) in {time.perf_counter() - started:.1f}s; "
        f"wrote masks and {result.output / FINDINGS_NAME}"
    )
    if result.clinical is not None:
        print(f"clinical indices of {len(result.clinical)} patient(s) in {result.output / CLINICAL_NAME}")
        for patient in result.clinical:
            for note in patient.notes:
                print(f"clinical: patient {patient.patient}: {note}")
    for note in result.clinical_notes:
        print(f"clinical: {note}")
    for note in result.runtime:
        print(f"runtime: {note}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} input(s), listed in {result.output / SKIPPED_NAME}:", file=sys.stderr)
        for _, problem in result.skipped:
            print(f"  {problem}", file=sys.stderr)
    return 0
