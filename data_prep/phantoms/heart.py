"""A synthetic short-axis heart shared by the cardiac phantoms (ACDC, 2D PNG slices, Sunnybrook).

One slice is described by a :class:`HeartGeometry` (ellipses for the left-ventricle (LV) blood pool, the
epicardium and the right-ventricle (RV) cavity), drawn from the slice position (base to apex), the cardiac
phase (end-diastole to end-systole) and the patient's pathology group. From it come the label map
(ACDC values: 1 RV, 2 myocardium, 3 LV), the contours (Sunnybrook i/o-contours) and an MR-like image.

The image is meant to be learnable by a small UNet in a few CPU minutes but not by a threshold: the
blood pools are bright like the fat and the aorta around the heart, the myocardium is grey like the
chest muscle, dark papillary muscles sit inside the LV (labelled LV, as in ACDC), the edges are blurred
(partial volume from supersampling, then a Gaussian blur), and every image has its own bias field,
contrast and Rician noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: ACDC label values, shared by every cardiac source
RV, MYO, LV = 1, 2, 3
GROUPS = ("NOR", "DCM", "HCM", "MINF", "RV")

# group -> (LV size factor, myocardium thickness factor, contraction from ED to ES, RV size factor)
_GROUP_SHAPE = {
    "NOR": (1.0, 1.0, 0.40, 1.0),
    "DCM": (1.35, 0.8, 0.12, 1.0),
    "HCM": (0.8, 1.7, 0.55, 0.9),
    "MINF": (1.15, 0.9, 0.20, 1.0),
    "RV": (0.9, 1.0, 0.35, 1.6),
}


@dataclass(frozen=True)
class Ellipse:
    """An ellipse in pixel coordinates: centre (row, col), semi-axes (along rotated rows, cols), angle (rad)."""

    row: float
    col: float
    a: float
    b: float
    angle: float

    def inside(self, rows: np.ndarray, cols: np.ndarray, grow: float = 0.0) -> np.ndarray:
        """Boolean mask of the points (rows, cols) inside the ellipse enlarged by ``grow`` pixels."""
        dr, dc = rows - self.row, cols - self.col
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = c * dr + s * dc, -s * dr + c * dc
        return (u / (self.a + grow)) ** 2 + (v / (self.b + grow)) ** 2 <= 1.0

    def polygon(self, n_points: int) -> np.ndarray:
        """``n_points`` points (x = column, y = row) along the outline, counter-clockwise."""
        t = np.linspace(0.0, 2.0 * math.pi, n_points, endpoint=False)
        u, v = self.a * np.cos(t), self.b * np.sin(t)
        c, s = math.cos(self.angle), math.sin(self.angle)
        rows = self.row + c * u - s * v
        cols = self.col + s * u + c * v
        return np.stack([cols, rows], axis=1)


@dataclass(frozen=True)
class HeartGeometry:
    """The structures of one short-axis slice, in pixels of an image of ``shape`` (rows, cols)."""

    shape: tuple[int, int]
    endocardium: Ellipse | None  # LV blood pool; None above the base or below the apex
    epicardium: Ellipse | None
    rv: Ellipse | None  # RV cavity = inside rv, outside epicardium grown by the septal wall
    rv_wall: float
    papillary: tuple[tuple[float, float, float], ...]  # (row, col, radius) dark dots inside the LV


@dataclass(frozen=True)
class Patient:
    """Per-patient anatomy that stays fixed over slices and phases."""

    group: str
    centre: tuple[float, float]  # LV centre as a fraction of (rows, cols)
    lv_radius: float  # ED basal LV radius as a fraction of the image side
    elongation: float
    angle: float
    rv_angle: float  # direction of the RV from the LV centre (rad)
    brightness: float


def sample_patient(rng: np.random.Generator, group: str | None = None) -> Patient:
    """Draw one patient's anatomy; ``group`` is drawn from :data:`GROUPS` when not given."""
    group = group or str(rng.choice(GROUPS))
    return Patient(
        group=group,
        centre=(float(rng.uniform(0.42, 0.55)), float(rng.uniform(0.45, 0.58))),
        lv_radius=float(rng.uniform(0.085, 0.11)),
        elongation=float(rng.uniform(0.85, 1.15)),
        angle=float(rng.uniform(0, math.pi)),
        rv_angle=float(rng.uniform(0.8, 1.2) * math.pi),  # RV on the image left, as in short-axis views
        brightness=float(rng.uniform(0.8, 1.2)),
    )


def heart_geometry(
    patient: Patient, shape: tuple[int, int], slice_frac: float, contraction: float, rng: np.random.Generator
) -> HeartGeometry:
    """The heart of ``patient`` at one slice and phase.

    Args:
        patient: the anatomy from :func:`sample_patient`.
        shape: image (rows, cols).
        slice_frac: 0 at the base, 1 at the apex; outside [0, 1] the slice misses the ventricles.
        contraction: 0 at end-diastole (ED), 1 at end-systole (ES).
        rng: jitter of the slice (a few percent in size and position).

    Returns:
        the slice's geometry.
    """
    size_f, thick_f, contract_f, rv_f = _GROUP_SHAPE[patient.group]
    side = min(shape)
    jitter = rng.normal(0.0, 0.02, size=3)
    row = patient.centre[0] * shape[0] + jitter[0] * side
    col = patient.centre[1] * shape[1] + jitter[1] * side
    if not -0.05 <= slice_frac <= 1.05:
        return HeartGeometry(tuple(shape), None, None, None, 0.0, ())
    taper = math.sqrt(max(0.05, 1.0 - 0.8 * slice_frac**1.5))  # the LV narrows towards the apex
    squeeze = 1.0 - contract_f * contraction
    radius = patient.lv_radius * side * size_f * taper * (1.0 + jitter[2])
    thickness = 0.045 * side * thick_f * (1.0 + 0.5 * contract_f * contraction) * (0.8 + 0.2 * taper)
    endo_r = max(1.2, radius * squeeze)
    endo = Ellipse(row, col, endo_r * patient.elongation, endo_r / patient.elongation, patient.angle)
    epi_r = endo_r + thickness
    epi = Ellipse(row, col, epi_r * patient.elongation, epi_r / patient.elongation, patient.angle)
    rv = None
    if slice_frac < 0.85:  # no RV cavity at the apex
        rv_r = epi_r * rv_f * (1.0 - 0.6 * slice_frac) * (1.0 - 0.4 * contract_f * contraction)
        dist = epi_r * 0.8 + rv_r * 0.55
        rv = Ellipse(
            row + dist * math.sin(patient.rv_angle),
            col + dist * math.cos(patient.rv_angle),
            rv_r * 1.5,
            rv_r * 0.8,
            patient.rv_angle + math.pi / 2,
        )
    papillary = []
    if endo_r > 4 and slice_frac > 0.2:
        for k in range(2):
            theta = patient.rv_angle + math.pi + (k - 0.5) * 1.4
            papillary.append((row + 0.6 * endo_r * math.sin(theta), col + 0.6 * endo_r * math.cos(theta),
                              max(0.8, 0.15 * endo_r)))
    return HeartGeometry(tuple(shape), endo, epi, rv, max(1.0, 0.35 * thickness), tuple(papillary))


def _grid(shape: tuple[int, int], supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of pixel centres (supersampled: sub-pixel centres), integer values at pixel centres."""
    step = 1.0 / supersample
    offsets = (np.arange(supersample) + 0.5) * step - 0.5
    rows = (np.arange(shape[0])[:, None] + offsets[None, :]).reshape(-1)
    cols = (np.arange(shape[1])[:, None] + offsets[None, :]).reshape(-1)
    return np.meshgrid(rows, cols, indexing="ij")


def _regions(geom: HeartGeometry, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
    empty = np.zeros(rows.shape, dtype=bool)
    if geom.endocardium is None:
        return {"lv": empty, "myo": empty, "rv": empty}
    lv = geom.endocardium.inside(rows, cols)
    epi = geom.epicardium.inside(rows, cols)
    rv = empty if geom.rv is None else geom.rv.inside(rows, cols) & ~geom.epicardium.inside(rows, cols, geom.rv_wall)
    return {"lv": lv, "myo": epi & ~lv, "rv": rv}


def render_labels(geom: HeartGeometry) -> np.ndarray:
    """The label map (uint8, 0 background, 1 RV, 2 myocardium, 3 LV) sampled at pixel centres."""
    rows, cols = _grid(geom.shape)
    regions = _regions(geom, rows, cols)
    labels = np.zeros(geom.shape, dtype=np.uint8)
    labels[regions["rv"]] = RV
    labels[regions["myo"]] = MYO
    labels[regions["lv"]] = LV
    return labels


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders (numpy only)."""
    radius = max(1, int(3 * sigma + 0.5))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, radius, mode="reflect")
    tmp = np.apply_along_axis(np.convolve, 1, padded, kernel, mode="valid")
    return np.apply_along_axis(np.convolve, 0, tmp, kernel, mode="valid")


def render_image(geom: HeartGeometry, patient: Patient, rng: np.random.Generator, supersample: int = 3) -> np.ndarray:
    """An MR-like image of the slice, float32 roughly in [0, 1].

    Args:
        geom: the slice from :func:`heart_geometry`.
        patient: its patient (sets the brightness).
        rng: draws the surroundings, bias field, contrast and noise.
        supersample: sub-pixels per pixel side, for partial-volume edges.

    Returns:
        the image, shape ``geom.shape``.
    """
    h, w = geom.shape
    rows, cols = _grid(geom.shape, supersample)
    side = min(h, w)
    hr = geom.endocardium.row if geom.endocardium else h / 2
    hc = geom.endocardium.col if geom.endocardium else w / 2
    img = np.full(rows.shape, 0.02)
    body = Ellipse(h * 0.5, w * 0.5, h * rng.uniform(0.40, 0.47), w * rng.uniform(0.43, 0.49), rng.uniform(-0.2, 0.2))
    img[body.inside(rows, cols, 0.0)] = 0.85  # subcutaneous fat: a bright rim under the skin
    img[body.inside(rows, cols, -side * 0.035)] = rng.uniform(0.30, 0.40)  # muscle and soft tissue
    for sign in (-1, 1):  # dark lungs on both sides of the heart
        lung = Ellipse(hr + rng.uniform(-0.05, 0.05) * h, hc + sign * side * rng.uniform(0.25, 0.30),
                       side * rng.uniform(0.14, 0.2), side * rng.uniform(0.08, 0.12), rng.uniform(-0.5, 0.5))
        img[lung.inside(rows, cols)] = rng.uniform(0.04, 0.1)
    liver = Ellipse(h * rng.uniform(0.78, 0.86), w * rng.uniform(0.25, 0.45), side * 0.16, side * 0.25, 0.3)
    img[liver.inside(rows, cols)] = rng.uniform(0.40, 0.50)
    # bright distractors: the descending aorta (blood, like the LV) and epicardial fat
    aorta = Ellipse(hr + side * rng.uniform(0.12, 0.2), hc + side * rng.uniform(0.18, 0.26), side * 0.045,
                    side * 0.045, 0.0)
    img[aorta.inside(rows, cols)] = rng.uniform(0.7, 0.9)
    if geom.epicardium is not None:
        epi = geom.epicardium
        fat_ring = epi.inside(rows, cols, side * 0.05) & ~epi.inside(rows, cols, 0.6)
        arc = np.cos(np.arctan2(rows - epi.row, cols - epi.col) - rng.uniform(0, 2 * math.pi)) > 0.3
        img[fat_ring & arc] = rng.uniform(0.65, 0.85)
    regions = _regions(geom, rows, cols)
    img[regions["myo"]] = rng.uniform(0.22, 0.32)
    img[regions["rv"]] = rng.uniform(0.70, 0.85)
    img[regions["lv"]] = rng.uniform(0.78, 0.95)
    for pr, pc, radius in geom.papillary:
        dot = (rows - pr) ** 2 + (cols - pc) ** 2 <= radius**2
        img[dot] = rng.uniform(0.3, 0.45)
    # average the sub-pixels: partial volume at every edge
    img = img.reshape(h, supersample, w, supersample).mean(axis=(1, 3))
    img = _blur(img, rng.uniform(0.5, 0.9))
    # smooth multiplicative bias field (coil sensitivity), contrast, then Rician noise
    yy, xx = np.mgrid[0:h, 0:w] / side
    bias = 1.0 + rng.uniform(-0.25, 0.25) * (yy - 0.5) + rng.uniform(-0.25, 0.25) * (xx - 0.5)
    img = np.clip(img * bias * patient.brightness, 0, None) ** rng.uniform(0.8, 1.25)
    sigma = rng.uniform(0.025, 0.06)
    img = np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))
    return img.astype(np.float32)


def to_uint(image: np.ndarray, max_value: int, dtype) -> np.ndarray:
    """Scale a float image in about [0, 1] to integers in [0, max_value] (clipping the rare outliers)."""
    return np.clip(np.rint(image * (max_value / 1.2)), 0, max_value).astype(dtype)
