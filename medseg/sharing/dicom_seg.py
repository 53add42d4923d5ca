"""A DICOM Segmentation (``highdicom``) of a segmented DICOM series, for clinicians' viewers and PACS.

The SEG references the source series (its SOP instances, series, study and frame of reference), has one
segment per foreground label (the model's label names; a private code scheme ``99MEDSEG`` because the labels are
the model author's, not SNOMED concepts), and names the model as the algorithm (name and version from the
manifest or metadata; family "Artificial Intelligence").

Identifying values: only what the DICOM SEG module requires to place the object in the source's patient and
study is copied, and only from the source images (highdicom copies them; nothing is added): Patient's Name,
Patient ID, Patient's Birth Date, Patient's Sex, Study Instance UID, Study ID, Study Date, Study Time,
Accession Number and Referring Physician's Name (empty where the source has none, as the standard allows for
these type-2 attributes; nothing is invented). A de-identified input therefore gives a SEG with the same
de-identified values; a date that is not a valid date (de-identification often writes ``00000000`` or
``20120000``) is left empty. The source's institution, operators, device serial numbers and free-text
descriptions are not copied; the SEG's equipment module names medseg and the model, not the scanner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.sharing.errors import SharingError

# The attributes the SEG carries over from the source (see the module docstring and docs/sharing.md).
COPIED_IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
)
PRIVATE_SCHEME = "99MEDSEG"


def _prepare_copied_values(datasets: list) -> None:
    """On the in-memory copies: add the type-2 attributes the source lacks as empty values (so nothing is
    invented), and empty the copied dates that are not valid dates."""
    from datetime import datetime

    formats = {"StudyDate": "%Y%m%d", "PatientBirthDate": "%Y%m%d"}
    for ds in datasets:
        for keyword in COPIED_IDENTIFYING:
            if keyword != "StudyInstanceUID" and keyword not in ds:
                setattr(ds, keyword, "")
        for keyword, fmt in formats.items():
            value = str(getattr(ds, keyword, "") or "")
            if value:
                try:
                    datetime.strptime(value, fmt)
                except ValueError:
                    setattr(ds, keyword, "")


def position_groups(datasets: list) -> list[list[int]]:
    """Split a series into groups that one SEG can reference, in order: one frame of reference, distinct positions.

    A DICOM SEG frame is placed by its position in one frame of reference, so two source images at the same
    position (cine phases) or in different frames of reference cannot share one SEG; each group gets its own.
    """
    groups: list[list[int]] = []
    keys: list[tuple[str, set]] = []
    for index, ds in enumerate(datasets):
        position = tuple(round(float(v), 3) for v in getattr(ds, "ImagePositionPatient", [index, 0, 0]))
        frame = str(getattr(ds, "FrameOfReferenceUID", ""))
        for group, (group_frame, positions) in zip(groups, keys, strict=True):
            if group_frame == frame and position not in positions:
                group.append(index)
                positions.add(position)
                break
        else:
            groups.append([index])
            keys.append((frame, {position}))
    return groups


def write_dicom_segs(
    label_map: Any, datasets: list, labels: dict[int, str], algorithm: str, version: str, folder: Path, stem: str
) -> list[Path]:
    """One SEG (``<stem>_seg.dcm``) when the series allows it, else one per group (``<stem>_seg_part<k>.dcm``,
    e.g. one per cine phase); see :func:`position_groups`."""
    groups = position_groups(datasets)
    paths = []
    for k, group in enumerate(groups):
        name = f"{stem}_seg.dcm" if len(groups) == 1 else f"{stem}_seg_part{k}.dcm"
        part = label_map[..., group]
        paths.append(write_dicom_seg(part, [datasets[i] for i in group], labels, algorithm, version, folder / name))
    return paths


def write_dicom_seg(
    label_map: Any,
    datasets: list,
    labels: dict[int, str],
    algorithm: str,
    version: str,
    path: Path,
) -> Path:
    """Write a binary DICOM SEG for an (X=column, Y=row, Z=instance) label map of the series ``datasets``.

    Args:
        label_map: uint8 label map, slices in the order of ``datasets``.
        datasets: the source series' pydicom datasets, sorted as the label map's slices.
        labels: label value -> name (0 is background and gets no segment).
        algorithm: the model's name.
        version: the model's version.
        path: the ``.dcm`` file to write.

    Raises:
        SharingError: highdicom refuses the source series (e.g. missing frame of reference).
    """
    import highdicom as hd
    import numpy as np
    from pydicom.sr.codedict import codes

    from medseg import __version__ as medseg_version

    frames = np.ascontiguousarray(np.transpose(label_map, (2, 1, 0))).astype(np.uint8)  # (instance, row, column)
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm[:64], version=version[:64], family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name[:64],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=hd.sr.CodedConcept(f"L{value}", PRIVATE_SCHEME, name[:64]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_id,
        )
        for number, (value, name) in enumerate(sorted((v, n) for v, n in labels.items() if v), start=1)
    ]
    values = sorted(v for v in labels if v)
    # highdicom reads a label map's values as segment numbers 1..N
    remapped = np.zeros_like(frames)
    for number, value in enumerate(values, start=1):
        remapped[frames == value] = number
    _prepare_copied_values(datasets)
    series_number = int(getattr(datasets[0], "SeriesNumber", 0) or 0) + 1000
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=remapped,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="medseg",
            manufacturer_model_name=algorithm[:64],
            software_versions=f"medseg {medseg_version}; model {version}"[:64],
            device_serial_number="none",
            series_description=f"medseg segmentation ({algorithm})"[:64],
            omit_empty_frames=False,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        source = Path(getattr(datasets[0], "filename", "") or "the DICOM series").parent
        raise SharingError(source, f"cannot be referenced by a DICOM SEG ({exc})", "check the series' headers") from exc
    seg.save_as(str(path))
    return path
