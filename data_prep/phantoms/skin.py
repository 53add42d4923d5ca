"""Drawing helpers for dermoscopy phantoms: skin, lesion blobs, hairs and vignetting.

All functions draw with the ``numpy.random.Generator`` they are given, so that one seed gives one image. Images are
float32 ``(H, W, 3)`` arrays in 0..255 until :func:`to_uint8`; masks are boolean ``(H, W)`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from data_prep.errors import DataPrepError

# Fitzpatrick-like skin tones seen in dermoscopy (RGB)
SKIN_TONES = ((236, 196, 178), (226, 178, 152), (214, 160, 132), (242, 206, 190), (200, 146, 118))
JPEG_QUALITY = 92


@dataclass(frozen=True)
class LesionStyle:
    """How one lesion looks.

    Args:
        rim: RGB colour at the lesion's edge.
        core: RGB colour at its centre (the colour blends from rim to core).
        radius: mean radius as a share of the image's short side.
        irregularity: amplitude of the border's lobes (0 is an ellipse).
        elongation: ratio of the long to the short axis (1 is round).
        texture: standard deviation of the pigment texture (grey levels).
        texture_cells: coarseness of the texture (cells along a side; more is finer).
        dots: number of darker globules drawn inside.
        edge_softness: blur of the lesion's edge in pixels (the mask stays sharp).
    """

    rim: tuple[float, float, float]
    core: tuple[float, float, float]
    radius: float = 0.28
    irregularity: float = 0.15
    elongation: float = 1.2
    texture: float = 12.0
    texture_cells: int = 10
    dots: int = 0
    edge_softness: float = 1.5


def prepare_out(out: Path) -> None:
    """Create ``out``, refusing a non-empty folder so that two phantoms never mix.

    Raises:
        DataPrepError: ``out`` exists and is not an empty folder.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataPrepError(out, "exists and is not empty", "choose a new --out folder or delete this one")
    out.mkdir(parents=True, exist_ok=True)


def image_size(rng: np.random.Generator, low: int = 96, high: int = 160) -> tuple[int, int]:
    """A random (height, width): about a third square, the rest landscape or portrait with aspect up to 1.6."""
    short = int(rng.integers(low, high - 24))
    if rng.random() < 0.35:
        return short, short
    long = int(min(high, round(short * rng.uniform(1.15, 1.6))))
    return (short, long) if rng.random() < 0.7 else (long, short)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise: a ``cells`` x ``cells`` Gaussian grid upsampled bicubically to (height, width)."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC))


def skin_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Skin of a random tone with uneven shading, blotches and sensor noise."""
    tone = np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], np.float32) + rng.normal(0, 6, 3)
    shading = 1.0 + 0.05 * smooth_noise(rng, height, width, 3)[..., None]
    blotches = 5.0 * smooth_noise(rng, height, width, 12)[..., None] * np.array([1.0, 0.8, 0.7], np.float32)
    grain = rng.normal(0, 4.0, (height, width, 1)).astype(np.float32)
    return tone * shading + blotches + grain


def blob_mask(rng: np.random.Generator, height: int, width: int, style: LesionStyle) -> np.ndarray:
    """An irregular lobed blob: radius ``r(theta) = R (1 + sum_k a_k cos(k theta + phi_k))`` on a rotated ellipse."""
    short = min(height, width)
    radius = style.radius * short * rng.uniform(0.85, 1.15)
    # keep most of the lesion in view, as a dermatologist centres it (sometimes loosely)
    cy = height / 2 + rng.uniform(-0.18, 0.18) * height
    cx = width / 2 + rng.uniform(-0.18, 0.18) * width
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    angle = rng.uniform(0, np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = dx * cos + dy * sin, (-dx * sin + dy * cos) * style.elongation
    theta = np.arctan2(v, u)
    wobble = np.ones_like(theta)
    for k in range(2, 8):
        wobble += style.irregularity * rng.uniform(0.2, 1.0) / (k - 1) ** 0.8 * np.cos(k * theta + rng.uniform(0, 6.3))
    return np.hypot(u, v) <= radius * np.maximum(wobble, 0.3)


def paint_lesion(rng: np.random.Generator, skin: np.ndarray, mask: np.ndarray, style: LesionStyle) -> np.ndarray:
    """Blend a pigmented lesion over ``skin`` inside ``mask``: rim-to-core colour, texture, globules, soft edge."""
    height, width = mask.shape
    mask_img = Image.fromarray(mask.astype(np.uint8) * 255)
    alpha = np.asarray(mask_img.filter(ImageFilter.GaussianBlur(style.edge_softness)), np.float32) / 255.0
    # depth: 0 at the edge, 1 deep inside (a wide blur of the mask)
    depth = np.asarray(mask_img.filter(ImageFilter.GaussianBlur(max(2.0, 0.12 * min(height, width)))), np.float32)
    depth = np.clip((depth / 255.0 - 0.5) * 2.0, 0.0, 1.0)[..., None]
    jitter = rng.normal(0, 8, 3)
    rim, core = np.array(style.rim, np.float32) + jitter, np.array(style.core, np.float32) + jitter
    colour = rim + (core - rim) * depth
    texture = style.texture * smooth_noise(rng, height, width, style.texture_cells)
    colour = colour + texture[..., None] * np.array([1.0, 0.9, 0.8], np.float32)
    if style.dots:
        colour = _globules(rng, colour, mask, style.dots, core * 0.7)
    a = alpha[..., None]
    return skin * (1 - a) + colour * a


def _globules(rng, colour: np.ndarray, mask: np.ndarray, count: int, dark: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return colour
    layer = Image.new("L", (mask.shape[1], mask.shape[0]), 0)
    draw = ImageDraw.Draw(layer)
    for i in rng.integers(0, len(ys), count):
        r = rng.uniform(1.0, 2.5)
        draw.ellipse((xs[i] - r, ys[i] - r, xs[i] + r, ys[i] + r), fill=255)
    weight = np.asarray(layer.filter(ImageFilter.GaussianBlur(0.8)), np.float32)[..., None] / 255.0
    return colour * (1 - weight) + dark * weight


def draw_hairs(rng: np.random.Generator, image: np.ndarray, count: int) -> np.ndarray:
    """Draw ``count`` dark, slightly curved hairs crossing the image (over lesion and skin alike)."""
    if count <= 0:
        return image
    height, width = image.shape[:2]
    layer = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(layer)
    t = np.linspace(0.0, 1.0, 24)[:, None]
    for _ in range(count):
        start = rng.uniform([-0.1 * width, -0.1 * height], [1.1 * width, 1.1 * height])
        end = rng.uniform([-0.1 * width, -0.1 * height], [1.1 * width, 1.1 * height])
        bend = (start + end) / 2 + rng.normal(0, 0.15 * min(height, width), 2)
        points = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end  # quadratic Bezier
        draw.line([tuple(p) for p in points], fill=int(rng.integers(170, 255)), width=int(rng.integers(1, 3)))
    weight = np.asarray(layer, np.float32)[..., None] / 255.0
    hair = np.array([40, 28, 22], np.float32) + rng.normal(0, 6, 3)
    return image * (1 - weight) + hair * weight


def vignette(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Darken the corners like a dermatoscope's round field of view (strength varies per image)."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((yy - height / 2) / (height / 2), (xx - width / 2) / (width / 2)) / np.sqrt(2)
    strength = rng.uniform(0.3, 0.85)
    fall = np.clip((r - 0.55) / 0.45, 0, 1) ** 1.6
    return image * (1 - strength * fall)[..., None]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip a float image to uint8."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def draw_dermoscopy(rng: np.random.Generator, height: int, width: int, style: LesionStyle,
                    hairs: int) -> tuple[np.ndarray, np.ndarray]:
    """One dermoscopy-like image and its lesion mask.

    Args:
        rng: the generator all randomness is drawn from.
        height: image height in pixels.
        width: image width in pixels.
        style: how the lesion looks.
        hairs: number of hairs drawn over the image.

    Returns:
        the uint8 RGB image ``(H, W, 3)`` and the uint8 mask ``(H, W)`` with 255 on the lesion and 0 elsewhere.
    """
    mask = blob_mask(rng, height, width, style)
    image = paint_lesion(rng, skin_background(rng, height, width), mask, style)
    image = vignette(rng, draw_hairs(rng, image, hairs))
    return to_uint8(image), mask.astype(np.uint8) * 255


def save_jpeg(image: np.ndarray, path: Path) -> None:
    """Save an RGB uint8 array as a baseline JPEG with fixed settings (same array, same bytes)."""
    Image.fromarray(image, "RGB").save(path, format="JPEG", quality=JPEG_QUALITY, optimize=False)


def save_png(array: np.ndarray, path: Path) -> None:
    """Save a uint8 array (grey or RGB) as PNG with fixed settings."""
    Image.fromarray(array).save(path, format="PNG", compress_level=6)
