"""Phantom of ISIC 2017 Task 1 (lesion segmentation), in the layout of the challenge's downloads.

Layout written (ids ``ISIC_0000000`` upwards; about 70 % training, 15 % validation, 15 % test)::

    ISIC-2017_Training_Data/ISIC_0000000.jpg                     RGB JPEG, 96..160 px a side
    ISIC-2017_Training_Data/ISIC_0000000_superpixels.png         as in the real download (ignored by converters)
    ISIC-2017_Training_Data/ISIC-2017_Training_Data_metadata.csv image_id,age_approximate,sex
    ISIC-2017_Training_Part1_GroundTruth/ISIC_0000000_segmentation.png   8-bit, 0 or 255, size of the image
    ISIC-2017_Validation_Data/ ... ISIC-2017_Validation_Part1_GroundTruth/ ...
    ISIC-2017_Test_v2_Data/ ...    ISIC-2017_Test_v2_Part1_GroundTruth/ ...

Images show one irregular brown-to-dark lesion on skin with texture and noise, a few hairs crossing and a dark
vignette; the mask is the lesion. Contrast, size, border irregularity, hairs and vignetting vary from image to image,
so that a small UNet learns the task in a few CPU minutes without solving it by a threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.phantoms.skin import LesionStyle, draw_dermoscopy, image_size, prepare_out, save_jpeg, save_png

# (split folder prefix, share of n): the official ISIC 2017 split, in the same proportions as a 70/15/15 % split
SPLITS = (("ISIC-2017_Training", 0.70), ("ISIC-2017_Validation", 0.15), ("ISIC-2017_Test_v2", 0.15))
SUPERPIXEL_CELL = 16


def split_counts(n: int) -> list[int]:
    """Images per split for ``n`` images (validation and test get at least one each when n >= 3)."""
    val = max(1, round(n * SPLITS[1][1])) if n >= 3 else 0
    test = max(1, round(n * SPLITS[2][1])) if n >= 3 else 0
    return [n - val - test, val, test]


def lesion_style(rng: np.random.Generator) -> LesionStyle:
    """A random pigmented lesion: light tan to near-black, round to very irregular, faint to sharp contrast."""
    darkness = rng.uniform(0.0, 1.0)
    rim = np.array([185, 135, 100]) * (1 - 0.45 * darkness) + rng.normal(0, 8, 3)
    core = rim * rng.uniform(0.55, 0.95) + np.array([0, 0, 1]) * rng.uniform(0, 25)  # sometimes bluish centre
    return LesionStyle(
        rim=tuple(float(c) for c in rim),
        core=tuple(float(c) for c in core),
        radius=float(rng.uniform(0.14, 0.36)),
        irregularity=float(rng.uniform(0.03, 0.4)),
        elongation=float(rng.uniform(1.0, 1.6)),
        texture=float(rng.uniform(4, 22)),
        texture_cells=int(rng.integers(6, 18)),
        dots=int(rng.integers(0, 3) * rng.integers(0, 12)),
        edge_softness=float(rng.uniform(0.6, 3.0)),
    )


def superpixels(height: int, width: int) -> np.ndarray:
    """A grid of superpixels encoded like ISIC 2017 (index = R + 256 G + 65536 B) as an RGB uint8 array."""
    rows = np.arange(height)[:, None] // SUPERPIXEL_CELL
    cols = np.arange(width)[None, :] // SUPERPIXEL_CELL
    index = rows * (-(-width // SUPERPIXEL_CELL)) + cols
    return np.stack([index & 255, (index >> 8) & 255, (index >> 16) & 255], axis=-1).astype(np.uint8)


def generate(out: Path, n: int, seed: int) -> None:
    """Write ``n`` ISIC 2017 phantom cases under ``out``.

    Args:
        out: folder to create (must not exist or be empty).
        n: number of images over the three splits.
        seed: the same seed gives byte-identical files.

    Raises:
        DataPrepError: ``out`` exists and is not empty.
    """
    out = Path(out)
    prepare_out(out)
    index = 0
    for (prefix, _), count in zip(SPLITS, split_counts(n), strict=True):
        data_dir, truth_dir = out / f"{prefix}_Data", out / f"{prefix}_Part1_GroundTruth"
        data_dir.mkdir()
        truth_dir.mkdir()
        meta = ["image_id,age_approximate,sex"]
        for _ in range(count):
            # one generator per image: image i does not depend on n
            rng = np.random.default_rng([seed, index])
            case_id = f"ISIC_{index:07d}"
            height, width = image_size(rng)
            image, mask = draw_dermoscopy(rng, height, width, lesion_style(rng), hairs=int(rng.integers(0, 5)))
            save_jpeg(image, data_dir / f"{case_id}.jpg")
            save_png(superpixels(height, width), data_dir / f"{case_id}_superpixels.png")
            save_png(mask, truth_dir / f"{case_id}_segmentation.png")
            age = "unknown" if rng.random() < 0.1 else str(int(rng.integers(3, 18)) * 5)
            sex = ("male", "female", "unknown")[int(rng.choice(3, p=[0.48, 0.47, 0.05]))]
            meta.append(f"{case_id},{age},{sex}")
            index += 1
        (data_dir / f"{prefix}_Data_metadata.csv").write_text("\n".join(meta) + "\n")
