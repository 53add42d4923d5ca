"""Cardiac inputs of ``medseg predict``: which patient and phase each input is, and the clinical indices of its masks.

``medseg predict`` knows a patient's end-diastolic (ED) and end-systolic (ES) frames in two layouts:

* an ACDC-style dataset folder: ``patientXXX/Info.cfg`` names the frames (``ED: 1``, ``ES: 12``) and
  ``patientXXX/patientXXX_frameNN.nii.gz`` are their short-axis volumes, whose third NIfTI pixdim is the distance
  between slice centres. In such a folder the expert masks (``*_gt.nii.gz``) and the 4D cine (``*_4d.nii.gz``) are
  not inputs;
* a ``data_prep`` datalist (``--input datalist.json``) whose items carry ``group_id`` (the patient), ``phase``
  (``ED``/``ES``), ``slice``, ``spacing`` and ``slice_thickness`` (``data_prep acdc`` writes them all).

The predicted masks of those inputs become per-patient indices (:mod:`medseg.clinical`): LV and RV EDV, ESV, SV, EF
and LV mass, with a one-line note for every index left out. A plain folder of images says nothing about patients
or phases, so it gets no indices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INFO_NAME = "Info.cfg"
PHASES = ("ED", "ES")


@dataclass(frozen=True)
class CardiacInput:
    """What makes an input one frame of a patient's cine.

    Attributes:
        patient: the patient id (the ACDC folder name, the datalist's ``group_id``).
        phase: ``"ED"`` or ``"ES"``.
        slice: the input's position in its frame's stack when it is one 2D slice; None when it is the whole stack.
        spacing: in-plane pixel size (mm, mm) recorded with the input; None: the image header's.
        slice_thickness: distance between slice centres (mm) recorded with the input; None: the volume header's.
    """

    patient: str
    phase: str
    slice: int | None = None
    spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None


def read_frames(info: Path) -> dict[str, int]:
    """The ED and ES frame numbers an ACDC ``Info.cfg`` names (``{"ED": 1, "ES": 12}``); those it lacks are absent.

    Read leniently: a line that is not ``key: value`` or a frame that is not a number is ignored, so a damaged
    file leaves out only what it cannot say (the read-out then notes the missing frame).
    """
    try:
        lines = info.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    frames = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip() in PHASES and value.strip().isdigit() and int(value) > 0:
            frames[key.strip()] = int(value)
    return frames


def _nifti_stem(path: Path) -> str:
    lower = path.name.lower()
    for suffix in (".nii.gz", ".nii"):
        if lower.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def tag_acdc_frames(cases: list, drop_extras: bool) -> list:
    """Tag the NIfTI inputs that are the ED or ES frame of an ACDC patient folder (one holding ``Info.cfg``).

    Args:
        cases: the discovered :class:`medseg.sharing.inputs.InputCase` list (tagged in place).
        drop_extras: leave out that folder's expert masks (``<patient>_frameNN_gt``) and 4D cine (``<patient>_4d``):
            they are not images to segment (the cine is refused as 4D anyway).

    Returns:
        the cases to segment.
    """
    frames_of: dict[Path, dict[str, int]] = {}
    kept = []
    for case in cases:
        if case.kind != "nifti":
            kept.append(case)
            continue
        path = case.files[0]
        folder = path.parent
        if folder not in frames_of:
            info = next((p for p in _listing(folder) if p.name.lower() == INFO_NAME.lower()), None)
            frames_of[folder] = read_frames(info) if info is not None else {}
        frames = frames_of[folder]
        stem = _nifti_stem(path).lower()
        patient = folder.name
        if frames and drop_extras and (
            stem == f"{patient.lower()}_4d"
            or (stem.startswith(f"{patient.lower()}_frame") and stem.endswith("_gt"))
        ):
            continue
        for phase, frame in frames.items():
            if stem == f"{patient.lower()}_frame{frame:02d}":
                case.cardiac = CardiacInput(patient, phase)
        kept.append(case)
    return kept


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def cardiac_of_item(item: dict) -> CardiacInput | None:
    """The patient, phase, slice and geometry of a datalist item; None when it has no ``group_id`` or ED/ES phase.

    The slice spacing is the item's ``slice_thickness``, or the third value of a three-value ``spacing`` (as
    ``medseg evaluate`` reads them).
    """
    phase = str(item.get("phase") or "").upper()
    if item.get("group_id") is None or phase not in PHASES:
        return None
    spacing = item.get("spacing")
    in_plane = None
    thickness = item.get("slice_thickness")
    if isinstance(spacing, list | tuple) and len(spacing) >= 2:
        in_plane = (float(spacing[0]), float(spacing[1]))
        if thickness is None and len(spacing) == 3:
            thickness = spacing[2]
    return CardiacInput(
        patient=str(item["group_id"]),
        phase=phase,
        slice=int(item["slice"]) if item.get("slice") is not None else None,
        spacing=in_plane,
        slice_thickness=float(thickness) if thickness else None,
    )


@dataclass
class ClinicalCollector:
    """Gathers the predicted slices of the cardiac inputs during a prediction run, then computes the indices.

    Attributes:
        slice_thickness: distance between slice centres (mm) for the inputs that record none (``--slice_thickness``).
        expected: ``(patient, phase) -> slice numbers`` of the full stacks of a datalist's 2D items, so that a slice
            that could not be segmented leaves its frame's volumes out (with a note) instead of under-counting them.
        slices: the predicted slices gathered so far.
        notes: one line per cardiac input that could not be used, for the command's output.
    """

    slice_thickness: float | None = None
    expected: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    slices: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def for_cases(cls, cases: Iterable, slice_thickness: float | None = None) -> ClinicalCollector | None:
        """A collector when some input is a cardiac frame; None for plain images (no patient, no phase)."""
        tagged = [c.cardiac for c in cases if getattr(c, "cardiac", None) is not None]
        if not tagged:
            return None
        expected: dict[tuple[str, str], set[int]] = {}
        for tag in tagged:
            if tag.slice is not None:
                expected.setdefault((tag.patient, tag.phase), set()).add(tag.slice)
        return cls(slice_thickness=slice_thickness, expected=expected)

    def add(self, tag: CardiacInput, label_map: Any, header_spacing: Sequence[float] | None, source: str) -> None:
        """Record an input's predicted label map.

        Args:
            tag: the input's patient, phase and recorded geometry.
            label_map: ``(X, Y)`` for a 2D input or ``(X, Y, Z)`` for a volume (slices on the last axis).
            header_spacing: the image header's voxel size in mm: (X, Y, Z) for a volume, (X, Y) for a 2D file (whose
                header has no slice spacing), or None when unknown.
            source: the input, for a note.
        """
        from medseg.clinical import SliceMask

        if label_map.ndim == 2:
            label_map = label_map[..., None]
        depth = label_map.shape[2]
        in_plane = tag.spacing
        if in_plane is None and header_spacing is not None and min(header_spacing[:2]) > 0:
            in_plane = (float(header_spacing[0]), float(header_spacing[1]))
        if tag.slice is not None:
            if depth != 1:
                self.notes.append(
                    f"{source}: listed as slice {tag.slice} of patient {tag.patient} {tag.phase} but holds {depth} "
                    "slices; left out of the clinical indices"
                )
                return
            thickness = tag.slice_thickness or self.slice_thickness  # a 2D header's third pixdim means nothing
            self.slices.append(SliceMask(tag.patient, tag.phase, tag.slice, label_map[..., 0], in_plane, thickness))
            return
        header_thickness = None
        if header_spacing is not None and len(header_spacing) == 3 and header_spacing[2] > 0:
            header_thickness = float(header_spacing[2])
        thickness = tag.slice_thickness or header_thickness or self.slice_thickness
        self.slices.extend(
            SliceMask(tag.patient, tag.phase, z, label_map[..., z], in_plane, thickness) for z in range(depth)
        )

    def indices(self, labels: dict[int, str]) -> tuple[list | None, str | None]:
        """Every patient's :class:`medseg.clinical.PatientIndices`, or None with the reason when there can be none.

        Args:
            labels: the model's label value -> name; it must name right ventricle, myocardium and left ventricle.
        """
        from medseg.clinical import CardiacLabels, patient_indices

        names = [str(labels.get(v, "")) for v in range(max(labels) + 1)] if labels else []
        structures = CardiacLabels.from_names(names)
        if structures is None:
            return None, (
                f"indices not computed: the model's labels ({', '.join(n for n in names if n)}) do not name "
                "right ventricle, myocardium and left ventricle"
            )
        if not self.slices and not self.expected:
            return None, "indices not computed: no ED or ES frame could be segmented"
        return patient_indices(self.slices, structures, self.expected or None), None
