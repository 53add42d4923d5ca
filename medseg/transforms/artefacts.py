"""Synthetic dermoscopy artefacts, a training augmentation: hairs, ink lines, stickers and specular glare.

Dermoscopy images carry things that are not skin: hairs, rulers and ink marks, coloured calibration stickers, the rim of
a contact plate and light reflected by the gel. The ISIC sample's failures included cases where such an object was
taken for the lesion (an orange sticker, a plate's rim and fingers, pen marks around a lesion), and 45 training images
hold few of them. This transform draws random ones onto the training image so that the network sees them as
not-lesion, the idea behind the hair augmentation of the ISIC 2019-2020 classification solutions. The label is
unchanged: thin artefacts (hairs, lines, glare dots) are drawn anywhere, as in real images, whose masks include the
lesion under a hair; filled stickers are placed only where the label is background throughout.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from skimage.draw import bezier_curve, disk, ellipse, line_aa

ARTEFACT_KINDS = ("hair", "line", "sticker", "glare")


def _as_numpy(array: Any) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


class RandSkinArtefactsd(RandomizableTransform, MapTransform):
    """Draw 1 to ``max_artefacts`` random dermoscopy artefacts onto a channel-first RGB image in [0, 1].

    Args:
        keys: the image key (one; an RGB image scaled to [0, 1], i.e. after intensity scaling and before any
            mean/std normalisation).
        label_key: the label, read to keep stickers on background; it is never changed.
        prob: probability of drawing anything on a sample.
        max_artefacts: at most this many artefacts per sample.
        kinds: which of ``hair``, ``line``, ``sticker``, ``glare`` to draw from.
        allow_missing_keys: as in MONAI.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        prob: float = 0.5,
        max_artefacts: int = 3,
        kinds: Sequence[str] = ARTEFACT_KINDS,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        unknown = sorted(set(kinds) - set(ARTEFACT_KINDS))
        if unknown or not kinds:
            raise ValueError(f"RandSkinArtefactsd: kinds {list(kinds)}: choose from {list(ARTEFACT_KINDS)}")
        if max_artefacts < 1:
            raise ValueError(f"RandSkinArtefactsd: max_artefacts {max_artefacts}: give 1 or more")
        self.label_key = label_key
        self.max_artefacts = max_artefacts
        self.kinds = tuple(kinds)

    # each drawer paints onto ``canvas`` (3, H, W) in place; ``background`` (H, W) is where the label is 0, or None
    def _hair(self, canvas: np.ndarray, background: np.ndarray | None) -> None:
        h, w = size = canvas.shape[1:]
        points = [(self.R.randint(h), self.R.randint(w)) for _ in range(3)]
        rr, cc = bezier_curve(*points[0], *points[1], *points[2], weight=self.R.uniform(0.5, 2.0), shape=size)
        colour = self.R.uniform(0.02, 0.25) * np.array([1.0, 0.8, 0.7])
        thickness = 1 + int(self.R.rand() < max(h, w) / 512)
        for dr in range(thickness):
            canvas[:, np.clip(rr + dr, 0, h - 1), cc] = colour[:, None]

    def _line(self, canvas: np.ndarray, background: np.ndarray | None) -> None:
        h, w = canvas.shape[1:]
        r0, c0, r1, c1 = self.R.randint(h), self.R.randint(w), self.R.randint(h), self.R.randint(w)
        rr, cc, val = line_aa(r0, c0, r1, c1)
        keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        rr, cc, val = rr[keep], cc[keep], val[keep]
        ink = self.R.choice([0, 1])  # a ruler's black or a marker's violet
        colour = np.array([0.1, 0.1, 0.1]) if ink == 0 else np.array([0.45, 0.25, 0.6])
        canvas[:, rr, cc] = canvas[:, rr, cc] * (1 - val) + colour[:, None] * val

    def _sticker(self, canvas: np.ndarray, background: np.ndarray | None) -> None:
        h, w = size = canvas.shape[1:]
        for _ in range(10):  # a place on background: a few tries, else none
            radius = self.R.uniform(0.08, 0.25) * min(h, w)
            centre = (self.R.uniform(0, h), self.R.uniform(0, w))
            rr, cc = ellipse(*centre, radius, radius * self.R.uniform(0.8, 1.25), shape=size)
            if rr.size and (background is None or background[rr, cc].all()):
                canvas[:, rr, cc] = self.R.uniform(0, 1, size=3)[:, None] ** 0.5  # saturated, mostly bright
                return

    def _glare(self, canvas: np.ndarray, background: np.ndarray | None) -> None:
        h, w = size = canvas.shape[1:]
        for _ in range(self.R.randint(1, 6)):
            rr, cc = disk((self.R.randint(h), self.R.randint(w)), self.R.uniform(0.5, 0.03 * min(h, w) + 1), shape=size)
            canvas[:, rr, cc] = self.R.uniform(0.9, 1.0)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        label = d.get(self.label_key)
        background = None if label is None else (_as_numpy(label)[0] == 0)
        for key in self.key_iterator(d):
            image = d[key]
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"RandSkinArtefactsd: '{key}' has shape {tuple(image.shape)}; it needs an RGB "
                                 "image, channel first (3, H, W)")
            canvas = _as_numpy(image).astype(np.float32, copy=True)
            for _ in range(self.R.randint(1, self.max_artefacts + 1)):
                getattr(self, f"_{self.kinds[self.R.randint(len(self.kinds))]}")(canvas, background)
            drawn = torch.as_tensor(canvas, dtype=image.dtype if isinstance(image, torch.Tensor) else torch.float32)
            if isinstance(image, torch.Tensor):
                d[key] = image.clone()
                d[key].copy_(drawn)  # keeps a MetaTensor's metadata and applied operations
            else:
                d[key] = drawn.numpy()
        return d
