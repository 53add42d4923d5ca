"""Checks of loaded images and labels that name the file and the fix.

They sit right after ``LoadImaged``/``EnsureChannelFirstd`` in a bundle's preprocessing. A failed check
raises :class:`medseg.bundle.InputCheckError`; :class:`medseg.handlers.InputErrorHandler` turns it into
the last line of the run (MONAI would otherwise bury it under ``RuntimeError: applying transform ...``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform, SqueezeDim

from medseg.bundle.errors import InputCheckError


def source_of(data: Mapping[Hashable, Any], key: Hashable) -> str:
    """The file an item's ``key`` was loaded from (its MetaTensor's ``filename_or_obj``), else the key."""
    meta = getattr(data[key], "meta", None) or data.get(f"{key}_meta_dict") or {}
    return str(meta.get("filename_or_obj", f"<{key}>"))


class CheckLabelRanged(MapTransform):
    """Check that label maps hold integer values in ``0 .. num_classes - 1``.

    Args:
        keys: the label keys.
        num_classes: number of classes the network predicts, background included.
        allow_missing_keys: skip keys an item lacks.

    Raises:
        InputCheckError: a value is out of range or not an integer (the message names the file).
    """

    def __init__(self, keys: KeysCollection, num_classes: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = int(num_classes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import torch

        d = dict(data)
        for key in self.key_iterator(d):
            values = torch.unique(torch.as_tensor(d[key]))
            bad = [v for v in values.tolist() if v < 0 or v >= self.num_classes or v != int(v)]
            if bad:
                shown = ", ".join(f"{v:g}" for v in bad[:5]) + (", ..." if len(bad) > 5 else "")
                raise InputCheckError(
                    f"{source_of(d, key)}: label values {shown} are outside 0..{self.num_classes - 1} "
                    f"(this bundle has {self.num_classes} classes); convert the labels with python -m data_prep "
                    "or set num_classes to match them"
                )
        return d


class CheckChannelsd(MapTransform):
    """Check that channel-first images have the number of channels the network takes.

    Args:
        keys: the image keys.
        num_channels: the network's ``in_channels``.
        allow_missing_keys: skip keys an item lacks.

    Raises:
        InputCheckError: the channel count differs (the message names the file).
    """

    def __init__(self, keys: KeysCollection, num_channels: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_channels = int(num_channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            found = int(d[key].shape[0])
            if found != self.num_channels:
                kind = {1: "greyscale", 3: "RGB", 4: "RGBA"}.get(found, f"{found}-channel")
                want = {1: "greyscale", 3: "RGB"}.get(self.num_channels, f"{self.num_channels}-channel")
                raise InputCheckError(
                    f"{source_of(d, key)}: image has {found} channel(s) ({kind}) but the network takes "
                    f"{self.num_channels} ({want}); convert the image, or use a bundle made for {kind} images"
                )
        return d


class SqueezeSliced(MapTransform):
    """Make channel-first 2D arrays of 2D slices stored with a singleton third axis (``(C, H, W, 1)``).

    Keeps the MetaTensor's affine consistent (MONAI's ``SqueezeDim`` updates it), so masks saved from the
    prediction keep the input's geometry.

    Args:
        keys: image and label keys.
        allow_missing_keys: skip keys an item lacks.

    Raises:
        InputCheckError: the array is a 3D volume (more than one slice).
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.squeeze = SqueezeDim(dim=-1, update_meta=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            while d[key].ndim > 3:
                if d[key].shape[-1] != 1:
                    raise InputCheckError(
                        f"{source_of(d, key)}: a {d[key].ndim - 1}D volume of shape {tuple(d[key].shape[1:])}; "
                        "this bundle takes 2D slices: convert the volumes with python -m data_prep acdc"
                    )
                d[key] = self.squeeze(d[key])
        return d
