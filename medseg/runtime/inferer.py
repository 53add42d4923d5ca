"""An inferer that runs another under the run's autocast and hands fp32 back."""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer

from medseg.runtime.amp import AmpPlan


def to_float32(output: Any) -> Any:
    """Low-precision floating tensors (in a tensor, tuple, list or dict) back to fp32; everything else unchanged."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() and output.dtype != torch.float32 else output
    if isinstance(output, (list, tuple)):
        return type(output)(to_float32(o) for o in output)
    if isinstance(output, dict):
        return {k: to_float32(v) for k, v in output.items()}
    return output


class AmpInferer(Inferer):
    """Run ``inferer`` inside ``plan``'s ``torch.autocast`` and return fp32 predictions.

    MONAI's engines call ``inferer(inputs, network)`` for the forward pass in training and evaluation, so autocast
    placed here covers exactly the network (the loss, metrics and post-processing then see fp32, as they should),
    works on any device (MONAI's own ``amp`` autocasts for CUDA only), and leaves the network and its checkpoints
    untouched. Backward through an autocast forward needs no context of its own.

    Args:
        inferer: the inferer to wrap (``SimpleInferer`` when None), e.g. a ``SlidingWindowInferer``.
        plan: from :func:`medseg.runtime.resolve_amp`; None or disabled runs ``inferer`` as it is.
    """

    def __init__(self, inferer: Inferer | None = None, plan: AmpPlan | None = None) -> None:
        super().__init__()
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.plan = plan

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        if self.plan is None or not self.plan.enabled:
            return self.inferer(inputs, network, *args, **kwargs)
        with self.plan.autocast():
            output = self.inferer(inputs, network, *args, **kwargs)
        return to_float32(output)
