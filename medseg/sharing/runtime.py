"""How ``medseg predict`` runs a network: no autograd, batches, and bf16 autocast where the hardware has it.

On CPU, bf16 autocast is used only when ``/proc/cpuinfo`` lists ``avx512_bf16`` or ``amx_bf16`` (elsewhere it
is slower than fp32); on CUDA, bf16 when the GPU supports it, else fp16. The manifest's ``inference.amp``
turns it off. Softmax is always computed in fp32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def autocast_dtype(device: str, amp: bool):
    """The autocast dtype for ``device`` (None: run in fp32)."""
    import torch

    if not amp:
        return None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


@contextlib.contextmanager
def inference_context(device: str, amp: bool) -> Iterator[None]:
    """``torch.no_grad`` plus autocast when :func:`autocast_dtype` gives a dtype."""
    import torch

    dtype = autocast_dtype(device, amp)
    with torch.no_grad():
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype):
                yield


def batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + max(1, size)]
