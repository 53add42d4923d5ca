"""The true cardiac volumes of the ACDC phantoms, replayed from the generator's own random draws.

``data_prep.phantoms.acdc.generate`` draws each patient's anatomy and every slice's ellipses from one random generator
per patient; replaying the same calls in the same order gives the same ellipses, from which the volumes follow:
LV = pi a b (the endocardial ellipse), myocardium = pi (a_epi b_epi - a_endo b_endo) (concentric ellipses), and the
RV cavity (an ellipse minus the grown epicardium, within the field of view: no closed form) integrated on a grid 15
times finer than the pixels. Each replayed label map is returned too, so a test can check that the replay matches the
files the generator wrote.
"""

from __future__ import annotations

import math

import numpy as np

from data_prep.phantoms import acdc, heart

FINE = 15  # sub-samples per pixel side for the RV integral


def _rv_area(geom: heart.HeartGeometry) -> float:
    """Area (pixels) of the RV cavity: its ellipse minus the grown epicardium, integrated on a fine grid."""
    if geom.rv is None:
        return 0.0
    rv, reach = geom.rv, max(geom.rv.a, geom.rv.b) + 1
    step = 1.0 / FINE
    rows, cols = np.meshgrid(
        np.arange(rv.row - reach, rv.row + reach, step), np.arange(rv.col - reach, rv.col + reach, step), indexing="ij"
    )
    in_image = (rows >= -0.5) & (rows < geom.shape[0] - 0.5) & (cols >= -0.5) & (cols < geom.shape[1] - 0.5)
    inside = in_image & rv.inside(rows, cols) & ~geom.epicardium.inside(rows, cols, geom.rv_wall)
    return float(inside.sum()) * step**2


def phantom_truth(n: int, seed: int) -> dict[str, dict]:
    """patient id -> ``spacing`` (3 mm values), ``volumes`` {(phase, structure): mL}, ``labels`` {phase: (H, W, Z)}."""
    truth = {}
    for index, (_, pid) in enumerate(acdc._patient_ids(n)):
        rng = np.random.default_rng([seed, index])
        group = heart.GROUPS[(index // 3) % len(heart.GROUPS)]
        patient = heart.sample_patient(rng, group)
        n_slices = int(rng.integers(6, 9))
        rng.integers(20, 31)  # number of frames
        es_frame = int(rng.integers(9, 16))
        in_plane = round(float(rng.uniform(1.2, 1.7)), 4)
        spacing = (in_plane, in_plane, float(rng.choice([5.0, 6.5, 8.0, 10.0])))
        voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
        volumes, labels = {}, {}
        for phase, contraction in (("ED", 0.0), ("ES", 1.0)):
            areas = {"LV": 0.0, "MYO": 0.0, "RV": 0.0}
            stack = np.zeros((*acdc.SHAPE, n_slices), dtype=np.uint8)
            for z in range(n_slices):
                geom = heart.heart_geometry(patient, acdc.SHAPE, (z - 0.6) / (n_slices - 1), contraction, rng)
                heart.render_image(geom, patient, rng)  # draws the same random numbers as the generator
                stack[:, :, z] = heart.render_labels(geom)
                if geom.endocardium is not None:
                    endo, epi = geom.endocardium, geom.epicardium
                    areas["LV"] += math.pi * endo.a * endo.b
                    areas["MYO"] += math.pi * (epi.a * epi.b - endo.a * endo.b)
                    areas["RV"] += _rv_area(geom)
            labels[phase] = stack
            volumes.update({(phase, k): v * voxel_ml for k, v in areas.items()})
        truth[pid] = {"spacing": spacing, "volumes": volumes, "labels": labels, "es_frame": es_frame}
    return truth
