"""Per-patient cardiac indices from short-axis label maps: ventricular volumes, stroke volume, ejection fraction, mass.

A patient's end-diastolic (ED) and end-systolic (ES) frames are stacks of 2D slices (ACDC: ``data_prep acdc`` writes
one item per slice with ``group_id`` = patient, ``phase``, ``slice`` and in-plane ``spacing``). A structure's volume
is the slice summation (Simpson's method as clinical software applies it to short-axis stacks): pixels of the label
x pixel area x slice spacing (the distance between slice centres), over the slices. Indices:

- ``LV_EDV``, ``LV_ESV``, ``RV_EDV``, ``RV_ESV`` (mL); ``LV_SV``, ``RV_SV`` = EDV - ESV (mL);
- ``LV_EF``, ``RV_EF`` = 100 x SV / EDV (%);
- ``LV_mass`` = myocardial volume at ED x 1.05 g/mL (g).

Nothing is guessed: an index is left out, with a note saying why, when its frame is missing, a slice of the stack is
missing, the slice spacing is unknown, the structure is not annotated in a slice, absent from the whole frame, or
absent from a slice between slices that hold it (a hole the summation would silently count as empty).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "INDICES",
    "MYOCARDIAL_DENSITY",
    "UNITS",
    "CardiacLabels",
    "PatientIndices",
    "SliceMask",
    "patient_indices",
    "slices_from_volume",
]

#: g/mL, the density clinical software uses for myocardial mass
MYOCARDIAL_DENSITY = 1.05
INDICES = ("LV_EDV", "LV_ESV", "LV_SV", "LV_EF", "RV_EDV", "RV_ESV", "RV_SV", "RV_EF", "LV_mass")
UNITS = {"EDV": "mL", "ESV": "mL", "SV": "mL", "EF": "%", "mass": "g"}
PHASES = ("ED", "ES")


def unit(index: str) -> str:
    """The unit of an index name (``"LV_EF"`` -> ``"%"``)."""
    return UNITS[index.split("_", 1)[1]]


@dataclass(frozen=True)
class CardiacLabels:
    """Label values of the structures (ACDC's by default: 1 right ventricle, 2 myocardium, 3 left ventricle)."""

    rv: int = 1
    myo: int = 2
    lv: int = 3

    @classmethod
    def from_names(cls, names: Sequence[str]) -> CardiacLabels | None:
        """Find the structures among label names (index = value); None when they are not all there."""
        lowered = [str(n).strip().lower() for n in names]
        wanted = {"rv": "right ventricle", "myo": "myocardium", "lv": "left ventricle"}
        if not all(name in lowered for name in wanted.values()):
            return None
        return cls(**{key: lowered.index(name) for key, name in wanted.items()})


@dataclass(frozen=True)
class SliceMask:
    """One short-axis slice's label map with its geometry.

    Attributes:
        patient: the patient (the datalist's ``group_id``).
        phase: ``"ED"`` or ``"ES"``.
        slice: the slice's position in the stack (0 at the base end, as ``data_prep acdc`` numbers them).
        mask: 2D label map.
        spacing: in-plane pixel size (mm, mm).
        slice_spacing: distance between slice centres (mm): ACDC's third NIfTI pixdim; None when unknown.
        annotated: the label values annotated in this slice (None: all).
    """

    patient: str
    phase: str
    slice: int
    mask: np.ndarray
    spacing: tuple[float, float] | None
    slice_spacing: float | None
    annotated: Sequence[int] | None = None


@dataclass
class PatientIndices:
    """A patient's indices (only those that could be computed) and why the others were left out."""

    patient: str
    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict[str, object]:
        """``patient``, every index (None when left out) and the notes joined, for a CSV row."""
        return {"patient": self.patient, **{k: self.values.get(k) for k in INDICES}, "notes": "; ".join(self.notes)}


def slices_from_volume(
    mask: np.ndarray,
    spacing: Sequence[float],
    patient: str,
    phase: str,
    annotated: Sequence[int] | None = None,
) -> list[SliceMask]:
    """Cut a predicted or expert volume ``(rows, cols, slices)`` into :class:`SliceMask` (e.g. in ``medseg predict``).

    Args:
        mask: the label volume, slices on the last axis (ACDC's NIfTI layout).
        spacing: (row mm, column mm, slice spacing mm).
        patient: the patient id.
        phase: ``"ED"`` or ``"ES"``.
        annotated: the label values annotated (None: all).

    Raises:
        ValueError: ``mask`` is not 3D or ``spacing`` does not have three positive values.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3 or len(spacing) != 3 or min(float(s) for s in spacing) <= 0:
        raise ValueError(
            f"patient {patient} {phase}: need a (rows, cols, slices) mask and three positive spacings, got shape "
            f"{mask.shape} and spacing {list(spacing)}"
        )
    in_plane = (float(spacing[0]), float(spacing[1]))
    return [
        SliceMask(patient, phase, z, mask[:, :, z], in_plane, float(spacing[2]), annotated)
        for z in range(mask.shape[2])
    ]


def _runs(present: Sequence[bool]) -> list[int]:
    """Positions of absent slices that lie between present ones (holes)."""
    where = [i for i, p in enumerate(present) if p]
    if not where:
        return []
    return [i for i in range(where[0], where[-1] + 1) if not present[i]]


def _phase_volumes(
    patient: str,
    phase: str,
    slices: list[SliceMask],
    expected: set[int] | None,
    labels: CardiacLabels,
    notes: list[str],
) -> dict[str, float]:
    """Volumes (mL) of LV, RV and myocardium of one frame; structures that cannot be measured are left out."""
    by_slice: dict[int, SliceMask] = {}
    for s in slices:
        if s.slice in by_slice:
            notes.append(f"{phase}: slice {s.slice} given twice; {phase} volumes left out (fix the datalist)")
            return {}
        by_slice[s.slice] = s
    wanted = set(expected) if expected is not None else set(range(max(by_slice) + 1))
    missing = sorted(wanted - set(by_slice))
    if missing:
        notes.append(f"{phase}: slices {missing} missing from the stack; {phase} volumes left out")
        return {}
    order = sorted(by_slice)
    thickness = {by_slice[z].slice_spacing for z in order}
    if None in thickness or any(t is not None and t <= 0 for t in thickness):
        notes.append(
            f"{phase}: slice spacing unknown; volumes left out (give the items 'slice_thickness' in mm, or pass "
            "--slice_thickness)"
        )
        return {}
    if any(by_slice[z].spacing is None for z in order):
        notes.append(f"{phase}: in-plane pixel spacing unknown; volumes left out (give the items 'spacing')")
        return {}
    volumes = {}
    for name, value in (("LV", labels.lv), ("RV", labels.rv), ("MYO", labels.myo)):
        unannotated = [z for z in order if by_slice[z].annotated is not None and value not in by_slice[z].annotated]
        if unannotated:
            notes.append(f"{phase}: {name} not annotated in slices {unannotated}; its {phase} volume left out")
            continue
        counts = [int(np.count_nonzero(by_slice[z].mask == value)) for z in order]
        if not any(counts):
            notes.append(f"{phase}: {name} absent from every slice; its {phase} volume left out")
            continue
        holes = _runs([c > 0 for c in counts])
        if holes:
            slice_ids = [order[i] for i in holes]
            notes.append(
                f"{phase}: {name} absent from slices {slice_ids} between slices that hold it; its {phase} volume "
                "left out"
            )
            continue
        mm3 = sum(
            c * by_slice[z].spacing[0] * by_slice[z].spacing[1] * by_slice[z].slice_spacing
            for c, z in zip(counts, order, strict=True)
        )
        volumes[name] = mm3 / 1000.0
    return volumes


def patient_indices(
    slices: Iterable[SliceMask],
    labels: CardiacLabels | None = None,
    expected_slices: Mapping[tuple[str, str], set[int]] | None = None,
) -> list[PatientIndices]:
    """Compute every patient's indices from their slices.

    Args:
        slices: the slices of every patient and phase (any order).
        labels: the structures' label values (ACDC's by default).
        expected_slices: ``(patient, phase) -> slice numbers`` the stack should hold (e.g. every item of the
            datalist, also those without a prediction); by default ``0..max`` of the slices given.

    Returns:
        one :class:`PatientIndices` per patient, sorted by patient id.
    """
    labels = labels or CardiacLabels()
    grouped: dict[str, dict[str, list[SliceMask]]] = defaultdict(lambda: defaultdict(list))
    for s in slices:
        grouped[str(s.patient)][str(s.phase).upper()].append(s)
    if expected_slices:
        for patient, _ in expected_slices:
            grouped.setdefault(str(patient), defaultdict(list))
    results = []
    for patient in sorted(grouped):
        result = PatientIndices(patient)
        phases = grouped[patient]
        volumes: dict[str, dict[str, float]] = {}
        all_slices = set()
        for phase in PHASES:
            expected = (expected_slices or {}).get((patient, phase))
            all_slices |= set(expected or ()) | {s.slice for s in phases.get(phase, [])}
        for phase in PHASES:
            if not phases.get(phase):
                result.notes.append(f"no {phase} frame: the indices that need it are left out")
                continue
            expected = (expected_slices or {}).get((patient, phase))
            # both frames come from one cine: a slice present in one frame is expected in the other
            wanted = set(expected) | all_slices if expected is not None else all_slices
            volumes[phase] = _phase_volumes(patient, phase, phases[phase], wanted, labels, result.notes)
        for side in ("LV", "RV"):
            edv = volumes.get("ED", {}).get(side)
            esv = volumes.get("ES", {}).get(side)
            if edv is not None:
                result.values[f"{side}_EDV"] = edv
            if esv is not None:
                result.values[f"{side}_ESV"] = esv
            if edv is not None and esv is not None:
                result.values[f"{side}_SV"] = edv - esv
                result.values[f"{side}_EF"] = 100.0 * (edv - esv) / edv
        myo = volumes.get("ED", {}).get("MYO")
        if myo is not None:
            result.values["LV_mass"] = myo * MYOCARDIAL_DENSITY
        results.append(result)
    return results
