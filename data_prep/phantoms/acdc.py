"""A synthetic dataset in the ACDC layout (Automated Cardiac Diagnosis Challenge, Bernard et al. 2018).

Written like the real release::

    training/patient001/Info.cfg                      ED: 1, ES: 12, Group: NOR, Height, Weight, NbFrame
    training/patient001/patient001_frame01.nii.gz     short-axis volume (X, Y, Z) at end-diastole
    training/patient001/patient001_frame01_gt.nii.gz  labels 0 background, 1 RV, 2 myocardium, 3 LV
    training/patient001/patient001_frame12.nii.gz     end-systole (smaller LV)
    training/patient001/patient001_frame12_gt.nii.gz
    testing/patient101/...                            same files, numbered from 101 as in the real release

Volumes are small (64 x 64 x 6..8), int16 or uint8 (both occur in ACDC), with a per-patient spacing
(about 1.4 x 1.4 x 10 mm) in the affine and pixdim. The 4D ``patientXXX_4d.nii.gz`` is not written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.phantoms import heart

SHAPE = (64, 64)


def _write_nifti(volume: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    import nibabel as nib

    affine = np.diag([*spacing, 1.0])
    img = nib.Nifti1Image(volume, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_data_dtype(volume.dtype)
    img.to_filename(str(path))  # nibabel's gzip has mtime 0 and no file name: byte-identical for a seed


def _patient_ids(n: int) -> list[tuple[str, str]]:
    """(split folder, patient id): most in training (001..), a quarter in testing (101..) as in ACDC."""
    n_test = n // 4 if n >= 4 else 0
    n_train = n - n_test
    return [("training", f"patient{i + 1:03d}") for i in range(n_train)] + [
        ("testing", f"patient{101 + i:03d}") for i in range(n_test)
    ]


def generate(out: Path, n: int, seed: int) -> None:
    """Write ``n`` synthetic ACDC patients (ED and ES frames with ground truth) under ``out``.

    Args:
        out: the dataset root to create (``training/`` and ``testing/`` go inside).
        n: number of patients.
        seed: the same seed gives byte-identical files.
    """
    out = Path(out)
    for index, (split, pid) in enumerate(_patient_ids(n)):
        rng = np.random.default_rng([seed, index])
        # groups in runs of three: every group appears once n >= 15, and each stratum is big enough for the
        # stratified validation split to take a patient from it
        group = heart.GROUPS[(index // 3) % len(heart.GROUPS)]
        patient = heart.sample_patient(rng, group)
        n_slices = int(rng.integers(6, 9))
        n_frames = int(rng.integers(20, 31))
        es_frame = int(rng.integers(9, 16))
        in_plane = round(float(rng.uniform(1.2, 1.7)), 4)
        spacing = (in_plane, in_plane, float(rng.choice([5.0, 6.5, 8.0, 10.0])))
        dtype, max_value = (np.int16, 1000) if index % 2 == 0 else (np.uint8, 255)
        folder = out / split / pid
        folder.mkdir(parents=True, exist_ok=True)
        for frame, contraction in ((1, 0.0), (es_frame, 1.0)):
            image = np.zeros((*SHAPE, n_slices), dtype=dtype)
            label = np.zeros((*SHAPE, n_slices), dtype=np.uint8)
            for z in range(n_slices):
                # slice 0 lies just above the base (atrium: no ventricle), the last one near the apex
                slice_frac = (z - 0.6) / (n_slices - 1)
                geom = heart.heart_geometry(patient, SHAPE, slice_frac, contraction, rng)
                image[:, :, z] = heart.to_uint(heart.render_image(geom, patient, rng), max_value, dtype)
                label[:, :, z] = heart.render_labels(geom)
            stem = f"{pid}_frame{frame:02d}"
            _write_nifti(image, spacing, folder / f"{stem}.nii.gz")
            _write_nifti(label, spacing, folder / f"{stem}_gt.nii.gz")
        height = round(float(rng.uniform(150, 195)), 1)
        weight = round(float(rng.uniform(50, 110)), 1)
        (folder / "Info.cfg").write_text(
            f"ED: 1\nES: {es_frame}\nGroup: {group}\nHeight: {height}\nNbFrame: {n_frames}\nWeight: {weight}\n"
        )
