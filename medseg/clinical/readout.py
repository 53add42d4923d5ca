"""The clinical read-out of an evaluation or a prediction run: indices per patient, agreement, CSV and figure."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from medseg.clinical.agreement import agreement, bland_altman_figure
from medseg.clinical.indices import INDICES, CardiacLabels, PatientIndices, SliceMask, patient_indices, unit

__all__ = ["ClinicalReadout", "clinical_readout", "write_indices_csv"]

CSV_NAME = "clinical.csv"
FIGURE_NAME = "bland_altman.png"


def write_indices_csv(
    path: str | Path, predicted: Iterable[PatientIndices], expert: Iterable[PatientIndices] = ()
) -> None:
    """One row per patient and source (``predicted`` / ``expert``): every index (empty when left out) and the notes.

    ``medseg predict`` can call this with the predicted indices alone (``patient_indices(slices_from_volume(...))``).
    """
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["patient", "source", *[f"{i} ({unit(i)})" for i in INDICES], "notes"])
        for source, items in (("predicted", predicted), ("expert", expert)):
            for p in items:
                row = p.row()
                values = ["" if row[i] is None else f"{row[i]:.4g}" for i in INDICES]
                writer.writerow([p.patient, source, *values, row["notes"]])


@dataclass
class ClinicalReadout:
    """Predicted (and expert) indices per patient and, with both, their agreement per index."""

    predicted: list[PatientIndices]
    expert: list[PatientIndices] | None
    table: dict[str, dict] | None

    def summary(self) -> dict:
        """What ``summary.json`` records under ``"clinical"``."""
        expert = {p.patient: p for p in self.expert or []}
        return {
            "definitions": {
                "EDV/ESV": "slice summation: label pixels x pixel area x slice spacing, in mL",
                "SV": "EDV - ESV (mL)",
                "EF": "100 x SV / EDV (%)",
                "LV_mass": "myocardial volume at ED x 1.05 g/mL (g)",
                "agreement": "predicted - expert: mean difference (bias), limits of agreement bias ± 1.96 SD, "
                "Pearson r (3+ patients), mean absolute error",
            },
            "n_patients": len(self.predicted),
            "patients": {
                p.patient: {
                    "predicted": p.values,
                    "predicted_notes": p.notes,
                    **({"expert": expert[p.patient].values, "expert_notes": expert[p.patient].notes}
                       if p.patient in expert else {}),
                }
                for p in self.predicted
            },
            "agreement": self.table,
        }

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow: ``clinical_<index>_<mae|bias|loa_lower|loa_upper|r>`` where defined."""
        out: dict[str, float] = {}
        names = {"mae": "mae", "mean_difference": "bias", "loa_lower": "loa_lower", "loa_upper": "loa_upper",
                 "pearson_r": "r"}
        for index, row in (self.table or {}).items():
            for key, short in names.items():
                if row.get(key) is not None:
                    out[f"clinical_{index}_{short}"] = float(row[key])
        return out

    def write(self, folder: Path) -> list[str]:
        """Write ``clinical.csv`` and (with agreement for 2+ patients) ``figures/bland_altman.png`` into ``folder``.

        Returns:
            the files written, relative to ``folder``.
        """
        written = [CSV_NAME]
        write_indices_csv(folder / CSV_NAME, self.predicted, self.expert or [])
        if self.table is not None:
            (folder / "figures").mkdir(exist_ok=True)
            if bland_altman_figure(self.predicted, self.expert or [], self.table, folder / "figures" / FIGURE_NAME):
                written.append(f"figures/{FIGURE_NAME}")
        return written


def clinical_readout(
    predicted: Iterable[SliceMask],
    expert: Iterable[SliceMask] | None = None,
    labels: CardiacLabels | None = None,
    expected_slices: Mapping[tuple[str, str], set[int]] | None = None,
) -> ClinicalReadout:
    """Indices of the predicted (and expert) slices and, with both, their agreement.

    Args:
        predicted: predicted label maps of every patient's ED and ES slices.
        expert: the expert's label maps of the same slices, when there are any.
        labels: the structures' label values (ACDC's by default).
        expected_slices: ``(patient, phase) -> slice numbers`` of the full stacks (see :func:`patient_indices`).
    """
    predicted_indices = patient_indices(predicted, labels, expected_slices)
    if expert is None:
        return ClinicalReadout(predicted_indices, None, None)
    expert_indices = patient_indices(expert, labels, expected_slices)
    return ClinicalReadout(predicted_indices, expert_indices, agreement(predicted_indices, expert_indices))
