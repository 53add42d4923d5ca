"""Phantom of HAM10000 with the lesion masks of Tschandl et al., in the layout of the published downloads.

Layout written (image ids from ``ISIC_0024306`` upwards, as in the real set)::

    HAM10000_images/ISIC_0024306.jpg                                  RGB JPEG, 96..160 px a side
    HAM10000_segmentations_lesion_tschandl/ISIC_0024306_segmentation.png   8-bit, 0 or 255, size of the image
    HAM10000_metadata.csv      lesion_id,image_id,dx,dx_type,age,sex,localization

Each lesion (``HAM_xxxxxxx``) has 1 to 3 images (the same lesion drawn again with another crop, rotation, skin and
hairs). The diagnosis ``dx`` sets the lesion's look (colour, size, border, texture; see :data:`CLASS_STYLES`), so that
a 7-class segmentation is learnable, and the classes are imbalanced like the real set (nv about two thirds) with
every class present when ``n >= 14``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import numpy as np

from data_prep.phantoms.skin import LesionStyle, draw_dermoscopy, image_size, prepare_out, save_jpeg, save_png

DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
# images per class in the real HAM10000 (10,015 images)
REAL_COUNTS = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}
FIRST_IMAGE = 24306
CLASS_STYLES = {
    # actinic keratosis: pink-red, scaly (coarse strong texture), flat irregular patch
    "akiec": LesionStyle(rim=(205, 120, 110), core=(185, 95, 90), radius=0.3, irregularity=0.3, texture=24,
                         texture_cells=24, edge_softness=2.5),
    # basal cell carcinoma: pearly pink with blue-grey globules
    "bcc": LesionStyle(rim=(215, 165, 165), core=(150, 145, 170), radius=0.24, irregularity=0.12, texture=8,
                       dots=14, edge_softness=1.2),
    # benign keratosis: light-mid brown, waxy, oval
    "bkl": LesionStyle(rim=(170, 125, 85), core=(150, 105, 70), radius=0.3, irregularity=0.08, elongation=1.5,
                       texture=14, texture_cells=16),
    # dermatofibroma: small, brown ring around a whitish centre
    "df": LesionStyle(rim=(150, 100, 70), core=(225, 205, 190), radius=0.15, irregularity=0.05, texture=5,
                      edge_softness=2.0),
    # melanoma: large, very irregular, dark brown to blue-black, many colours
    "mel": LesionStyle(rim=(95, 60, 45), core=(45, 40, 65), radius=0.36, irregularity=0.4, elongation=1.3,
                       texture=30, texture_cells=8, dots=10),
    # melanocytic naevus: medium, round, uniform brown
    "nv": LesionStyle(rim=(135, 88, 60), core=(115, 72, 48), radius=0.24, irregularity=0.05, elongation=1.1,
                      texture=6),
    # vascular lesion: small, red to purple lacunae
    "vasc": LesionStyle(rim=(185, 45, 70), core=(115, 30, 85), radius=0.17, irregularity=0.08, texture=18,
                        texture_cells=20, dots=6),
}
DX_TYPES = {"akiec": "histo", "bcc": "histo", "bkl": "histo", "df": "histo", "mel": "histo", "nv": "follow_up",
            "vasc": "consensus"}
SITES = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "foot", "scalp", "neck")
COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")


def class_counts(n: int) -> dict[str, int]:
    """Images per dx for ``n`` images: real proportions (largest remainder), at least 2 per class when n >= 14."""
    total = sum(REAL_COUNTS.values())
    floor = 2 if n >= 14 else (1 if n >= 7 else 0)
    spare = n - floor * len(DX)
    if spare < 0:  # fewer than 7 images: the most frequent classes first
        order = sorted(DX, key=lambda d: -REAL_COUNTS[d])
        return {d: int(d in order[:n]) for d in DX}
    share = {d: spare * REAL_COUNTS[d] / total for d in DX}
    counts = {d: floor + int(share[d]) for d in DX}
    for d in sorted(DX, key=lambda d: -(share[d] - int(share[d])))[: n - sum(counts.values())]:
        counts[d] += 1
    return counts


def plan_lesions(n: int, seed: int) -> list[tuple[str, str, int]]:
    """(lesion_id, dx, images of that lesion) for ``n`` images: 1 to 3 images per lesion, shuffled by seed."""
    rng = np.random.default_rng([seed, 1_000_003])
    lesions: list[tuple[str, int]] = []
    for dx, count in class_counts(n).items():
        while count > 0:
            k = int(min(count, rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15])))
            lesions.append((dx, k))
            count -= k
    order = rng.permutation(len(lesions))
    numbers = rng.choice(np.arange(1, max(8000, 2 * len(lesions))), size=len(lesions), replace=False)
    return [(f"HAM_{int(numbers[i]):07d}", lesions[j][0], lesions[j][1]) for i, j in enumerate(order)]


def lesion_style(rng: np.random.Generator, dx: str) -> LesionStyle:
    """The class's style with per-lesion variation of colour, size and border (variation < class differences)."""
    base = CLASS_STYLES[dx]
    shift = rng.normal(0, 7, 3)
    return replace(
        base,
        rim=tuple(float(c) for c in np.array(base.rim) + shift),
        core=tuple(float(c) for c in np.array(base.core) + shift),
        radius=float(base.radius * rng.uniform(0.8, 1.2)),
        irregularity=float(base.irregularity * rng.uniform(0.7, 1.3)),
    )


def generate(out: Path, n: int, seed: int) -> None:
    """Write ``n`` HAM10000 phantom images, their lesion masks and the metadata CSV under ``out``.

    Args:
        out: folder to create (must not exist or be empty).
        n: number of images.
        seed: the same seed gives byte-identical files.

    Raises:
        DataPrepError: ``out`` exists and is not empty.
    """
    out = Path(out)
    prepare_out(out)
    images, masks = out / "HAM10000_images", out / "HAM10000_segmentations_lesion_tschandl"
    images.mkdir()
    masks.mkdir()
    rows = []
    index = 0
    for lesion_number, (lesion_id, dx, count) in enumerate(plan_lesions(n, seed)):
        lesion_rng = np.random.default_rng([seed, 2, lesion_number])
        style = lesion_style(lesion_rng, dx)
        age = "" if lesion_rng.random() < 0.03 else f"{int(lesion_rng.integers(1, 18)) * 5}.0"
        sex = ("male", "female", "unknown")[int(lesion_rng.choice(3, p=[0.54, 0.45, 0.01]))]
        site = SITES[int(lesion_rng.integers(len(SITES)))]
        for _ in range(count):
            rng = np.random.default_rng([seed, 3, index])
            image_id = f"ISIC_{FIRST_IMAGE + index:07d}"
            height, width = image_size(rng)
            image, mask = draw_dermoscopy(rng, height, width, style, hairs=int(rng.integers(0, 4)))
            save_jpeg(image, images / f"{image_id}.jpg")
            save_png(mask, masks / f"{image_id}_segmentation.png")
            rows.append((lesion_id, image_id, dx, DX_TYPES[dx], age, sex, site))
            index += 1
    # the real CSV is sorted by lesion_id, with the images of one lesion together
    rows.sort(key=lambda r: (r[0], r[1]))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    (out / "HAM10000_metadata.csv").write_text(text.getvalue())
