"""Cardiac clinical read-outs: per-patient ventricular volumes, stroke volume, ejection fraction, myocardial mass,
and their agreement with the expert's (Bland-Altman, correlation, mean absolute error). See ``docs/clinical.md``."""

from medseg.clinical.agreement import agreement, bland_altman_figure
from medseg.clinical.indices import (
    INDICES,
    MYOCARDIAL_DENSITY,
    CardiacLabels,
    PatientIndices,
    SliceMask,
    patient_indices,
    slices_from_volume,
    unit,
)
from medseg.clinical.readout import ClinicalReadout, clinical_readout, write_indices_csv

__all__ = [
    "INDICES",
    "MYOCARDIAL_DENSITY",
    "CardiacLabels",
    "ClinicalReadout",
    "PatientIndices",
    "SliceMask",
    "agreement",
    "bland_altman_figure",
    "clinical_readout",
    "patient_indices",
    "slices_from_volume",
    "unit",
    "write_indices_csv",
]
