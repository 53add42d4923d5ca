"""A synthetic dataset of 2D short-axis cardiac MRI slices as 96x96 PNG files (the coursework ACDC layout).

Written like the real data::

    train/image/cmr1.png        96x96 8-bit grey
    train/mask/cmr1_mask.png    96x96 8-bit, 0 background, 1 RV, 2 myocardium, 3 LV
    val/image/cmrN.png  val/mask/cmrN_mask.png
    test/image/cmrN.png         no masks for the test split

About 70 % of the slices go to ``train``, 15 % to ``val`` and 15 % to ``test``; every slice comes from its
own synthetic patient, slice position and phase.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.imageio import write_png
from data_prep.phantoms import heart

SHAPE = (96, 96)


def _split_of(index: int, n: int) -> str:
    n_val = max(1, round(0.15 * n)) if n >= 3 else 0
    n_test = max(1, round(0.15 * n)) if n >= 3 else 0
    if index < n - n_val - n_test:
        return "train"
    return "val" if index < n - n_test else "test"


def generate(out: Path, n: int, seed: int) -> None:
    """Write ``n`` synthetic slices as ``train|val|test/image/cmrN.png`` (+ masks for train and val).

    Args:
        out: the dataset root to create.
        n: number of slices.
        seed: the same seed gives byte-identical files.
    """
    out = Path(out)
    for index in range(n):
        rng = np.random.default_rng([seed, index])
        patient = heart.sample_patient(rng)
        geom = heart.heart_geometry(patient, SHAPE, float(rng.uniform(0.0, 0.95)), float(rng.uniform(0, 1)), rng)
        split = _split_of(index, n)
        name = f"cmr{index + 1}"
        write_png(heart.to_uint(heart.render_image(geom, patient, rng), 255, np.uint8), out / split / "image" /
                  f"{name}.png")
        if split != "test":
            write_png(heart.render_labels(geom), out / split / "mask" / f"{name}_mask.png")
