"""Keeping identifying values out of every output: provenance, bad_cases.json and log lines.

DICOM exports are often laid out by patient (``Doe^Jane_MRN00007301/IM0001.dcm``), so a source path can identify
a patient even though no header value is copied. :class:`Scrubber` collects the identifying attributes of the
DICOM files under ``--src`` and replaces every path component that equals or contains one of them by the case's
pseudonym, and every occurrence in free text by a placeholder.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

# DICOM attributes that identify a patient, a visit or the people and places involved (PS3.15 E.1-1, abridged)
IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
    "PatientBirthDate", "PatientAddress", "PatientTelephoneNumbers", "MedicalRecordLocator", "IssuerOfPatientID",
    "AccessionNumber", "StudyID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "NameOfPhysiciansReadingStudy",
    "InstitutionName", "InstitutionAddress", "StationName", "DeviceSerialNumber",
)
# a value shorter than this is matched only as a whole path component (a PatientID "12" must not hit "IM-0012")
MIN_CONTAINED = 4
REDACTED = "[redacted]"


def dicom_identifiers(path: str | Path) -> tuple[set[str], str | None]:
    """The identifying values and the Modality of one DICOM file (header only); empty when it is unreadable.

    Args:
        path: a DICOM file.

    Returns:
        (identifying values as text, Modality or None).
    """
    import warnings

    import pydicom

    with warnings.catch_warnings():  # real exports carry slightly invalid values (UIDs with leading zeros)
        warnings.simplefilter("ignore")  # pydicom validates lazily, on access: the whole read stays inside
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[*IDENTIFYING_KEYWORDS, "Modality"])
            values = set()
            for keyword in IDENTIFYING_KEYWORDS:
                element = ds.get(keyword)
                if element is None:
                    continue
                many = isinstance(element, (list, tuple)) or type(element).__name__ == "MultiValue"
                values |= {str(v).strip() for v in (element if many else [element]) if str(v).strip()}
            return values, (str(ds.get("Modality") or "") or None)
        except Exception:  # an unreadable file is reported by the converter, with the file named
            return set(), None


def _variants(value: str) -> set[str]:
    """Spellings of ``value`` a folder name may use: ``Doe^Jane`` also as ``Doe Jane``, ``Doe_Jane``, ``Jane Doe``."""
    found = {value}
    parts = [p for p in re.split(r"[\^]", value) if p.strip()]
    if len(parts) > 1:
        for sep in (" ", "_", "-", "", ",", ", ", "."):
            found.add(sep.join(parts))
            found.add(sep.join(reversed(parts)))
        found |= {p.strip() for p in parts}  # the family or given name alone
    return {v for v in found if v}


class Scrubber:
    """Replaces identifying values in paths and text.

    Args:
        values: identifying values (PatientName, PatientID, ...) collected from the source's DICOM files.
    """

    def __init__(self, values: set[str] = frozenset()):
        self.values = sorted({v.lower() for value in values for v in _variants(value)}, key=len, reverse=True)
        long = [re.escape(v) for v in self.values if len(v) >= MIN_CONTAINED]
        self._pattern = re.compile("|".join(long), re.IGNORECASE) if long else None

    def __bool__(self) -> bool:
        return bool(self.values)

    def identifies(self, component: str) -> bool:
        """Whether a path component equals or contains an identifying value (case-insensitively)."""
        low = component.lower()
        stem = low.split(".", 1)[0]
        return low in self.values or stem in self.values or bool(self._pattern and self._pattern.search(component))

    def path(self, path: str, pseudonym: str) -> str:
        """``path`` (relative, POSIX) with each identifying component replaced by ``pseudonym``."""
        if not self:
            return path
        parts = [pseudonym if self.identifies(part) else part for part in PurePosixPath(path).parts]
        return PurePosixPath(*parts).as_posix() if parts else path

    def text(self, text: str | None, replacement: str = REDACTED) -> str | None:
        """``text`` with every identifying value of at least :data:`MIN_CONTAINED` characters replaced."""
        if not self._pattern or not text:
            return text
        return self._pattern.sub(replacement, text)
