"""Test-time augmentation: average class probabilities over flips and 90-degree rotations.

nnU-Net mirrors every test image along all spatial axes and averages the softmax outputs; for dermoscopy,
where a lesion has no preferred orientation, the 90-degree rotations add four more views (the eight
symmetries of the square). Each view is run through an inner MONAI inferer, turned into probabilities,
mapped back to the original orientation and averaged.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer

ACTIVATIONS = ("softmax", "sigmoid")


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"FlipTTAInferer: '{name}' must be true or false, got {value!r}")
    return value


class FlipTTAInferer(Inferer):
    """Average the class probabilities of an inner inferer over flipped and rotated copies of the input.

    Returns **probabilities** (softmax over the channel axis, or sigmoid for ``activation="sigmoid"``), not
    logits: a config's post-processing must take the argmax (or threshold) directly and must not apply a
    softmax again. With ``flips`` and ``rot90`` both false it runs the inner inferer once and still returns
    probabilities, so switching TTA off does not change what the post-processing receives.

    Views (``D`` spatial dimensions of ``inputs`` shaped ``(B, C, *spatial)``):

    * ``flips``: every subset of the spatial axes is mirrored (``2**D`` views, identity included);
    * ``rot90``: rotations by 90, 180 and 270 degrees in the last two spatial axes; with ``flips`` as well
      the views are the eight symmetries of the square (four rotations, each with and without a mirror)
      for 2D inputs. Non-square inputs are fine: the rotated copy is ``W x H``, and its output is rotated
      back; the network must accept both ``H x W`` and ``W x H`` inputs.

    Args:
        inferer: the inner inferer (e.g. ``SlidingWindowInferer``); default ``SimpleInferer()``.
        flips: mirror along the spatial axes.
        rot90: also rotate by multiples of 90 degrees (needs at least 2 spatial dimensions).
        activation: ``"softmax"`` (multi-class, default) or ``"sigmoid"`` (independent channels).
        log_probabilities: return the log of the mean probabilities (softmax of the result = the mean), for
            pipelines that apply ``Activationsd(softmax)`` afterwards, as the bundles' configs do.

    Raises:
        ValueError: a setting of the wrong type or value (one line naming the setting).

    Example config::

        {"_target_": "medseg.inference.FlipTTAInferer", "flips": true, "rot90": true,
         "inferer": {"_target_": "SimpleInferer"}}
    """

    def __init__(
        self,
        inferer: Inferer | None = None,
        flips: bool = True,
        rot90: bool = False,
        activation: str = "softmax",
        log_probabilities: bool = False,
    ) -> None:
        self.flips = _check_bool("flips", flips)
        self.log_probabilities = _check_bool("log_probabilities", log_probabilities)
        self.rot90 = _check_bool("rot90", rot90)
        if activation not in ACTIVATIONS:
            raise ValueError(f"FlipTTAInferer: 'activation' must be one of {ACTIVATIONS}, got {activation!r}")
        if inferer is not None and not callable(inferer):
            raise ValueError(f"FlipTTAInferer: 'inferer' must be a MONAI inferer, got {type(inferer).__name__}")
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.activation = activation

    def views(self, spatial_dims: int) -> list[tuple[int, tuple[int, ...]]]:
        """The views as ``(quarter turns, mirrored spatial axes)``, mirrors applied first, axes counted from 0.

        Args:
            spatial_dims: number of spatial dimensions of the input.

        Raises:
            ValueError: ``rot90`` with fewer than 2 spatial dimensions.
        """
        if self.rot90 and spatial_dims < 2:
            raise ValueError(
                f"FlipTTAInferer: 'rot90' needs 2 or more spatial dimensions, the input has {spatial_dims}"
            )
        turns = range(4) if self.rot90 else range(1)
        if self.flips and self.rot90 and spatial_dims == 2:
            # the 8 symmetries of the square: mirroring both axes equals a 180-degree turn, so one mirror suffices
            mirror_sets: Sequence[tuple[int, ...]] = [(), (spatial_dims - 1,)]
        elif self.flips:
            axes = range(spatial_dims)
            mirror_sets = [c for r in range(spatial_dims + 1) for c in itertools.combinations(axes, r)]
        else:
            mirror_sets = [()]
        return [(k, m) for k in turns for m in mirror_sets]

    def _probabilities(self, logits: Any) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor):
            raise ValueError(
                f"FlipTTAInferer: the inner inferer returned {type(logits).__name__}, not a tensor; "
                "use a network that returns one output at inference (e.g. deep supervision off in eval mode)"
            )
        logits = logits.float()
        return torch.softmax(logits, dim=1) if self.activation == "softmax" else torch.sigmoid(logits)

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Run every view through the inner inferer and return the mean probabilities ``(B, K, *spatial)``."""
        spatial_dims = inputs.ndim - 2
        plane = (inputs.ndim - 2, inputs.ndim - 1)  # the last two spatial axes, as tensor dims
        total = None
        views = self.views(spatial_dims)
        for turns, mirrored in views:
            dims = [axis + 2 for axis in mirrored]
            view = torch.flip(inputs, dims) if dims else inputs
            view = torch.rot90(view, turns, plane) if turns else view
            probs = self._probabilities(self.inferer(view, network, *args, **kwargs))
            probs = torch.rot90(probs, -turns, plane) if turns else probs  # undo in reverse order
            probs = torch.flip(probs, dims) if dims else probs
            total = probs if total is None else total + probs
        mean = total / len(views)
        # log-probabilities are logits whose softmax is exactly the mean: a config's Activationsd(softmax) and a
        # loss with softmax=True then see the averaged prediction, and switching TTA on changes nothing else
        return torch.log(mean.clamp_min(1e-8)) if self.log_probabilities else mean
