"""How ``medseg predict`` runs a network: no autograd, batches, bf16 autocast where the hardware has it, and ONNX
Runtime where it is faster.

On CPU, bf16 autocast is used only when ``/proc/cpuinfo`` lists ``avx512_bf16`` or ``amx_bf16`` (elsewhere it
is slower than fp32); on CUDA, bf16 when the GPU supports it, else fp16. The manifest's ``inference.amp``
turns it off. Softmax is always computed in fp32. On a CPU that infers in fp32, ``--backend auto`` (the default)
hands the network to ONNX Runtime when it is installed (:func:`choose_backend`,
:class:`medseg.runtime.onnx_backend.OnnxRuntimeNetwork`).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
BACKENDS = ("auto", "torch", "onnxruntime")
# the default of --backend: MEDSEG_BACKEND=torch keeps PyTorch everywhere (the tests set it: they compare masks
# pixel for pixel between paths, and a machine's choice of backend must not enter that comparison)
BACKEND_ENV = "MEDSEG_BACKEND"


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


@dataclass(frozen=True)
class BackendChoice:
    """Which library runs a shared model's networks.

    Attributes:
        onnxruntime: wrap the networks in :class:`medseg.runtime.onnx_backend.OnnxRuntimeNetwork`.
        require: keep ONNX Runtime even where PyTorch was faster on the first batch (``--backend onnxruntime``).
        reason: one line for the user.
    """

    onnxruntime: bool
    require: bool
    reason: str


def default_backend() -> str:
    return os.environ.get(BACKEND_ENV, "auto")


def choose_backend(backend: str | None, device: str, amp: bool) -> BackendChoice:
    """``--backend`` resolved for this machine.

    ``auto``: ONNX Runtime on a CPU that infers in fp32 (no bf16 instructions, or the manifest's ``amp`` off) when
    ``onnx``, ``onnxscript`` and ``onnxruntime`` are installed, PyTorch elsewhere. ``onnxruntime``: ONNX Runtime on
    the CPU, required. ``torch``: PyTorch.

    Raises:
        SharingError: an unknown backend, ``onnxruntime`` on CUDA, or ``onnxruntime`` without its packages.
    """
    from medseg.runtime.onnx_backend import missing_onnx_packages
    from medseg.sharing.errors import SharingError

    source = BACKEND_ENV if backend is None else "--backend"
    backend = default_backend() if backend is None else backend
    if backend not in BACKENDS:
        raise SharingError(source, f"{backend!r} is not one of {', '.join(BACKENDS)}", "use auto, torch or onnxruntime")
    install = "pip install 'medseg[onnx]'"
    if backend == "torch":
        return BackendChoice(False, False, "torch (--backend torch)")
    if backend == "onnxruntime":
        if device != "cpu":
            raise SharingError("--backend onnxruntime", f"runs on the CPU, not {device}", "add --device cpu")
        missing = missing_onnx_packages()
        if missing:
            raise SharingError("--backend onnxruntime", f"needs {', '.join(missing)}, not installed here", install)
        return BackendChoice(True, True, "onnxruntime (--backend onnxruntime)")
    if device != "cpu":
        return BackendChoice(False, False, f"torch on {device}")
    if autocast_dtype(device, amp) is not None:
        return BackendChoice(False, False, "torch: bf16 autocast on this CPU is faster than ONNX Runtime's fp32")
    missing = missing_onnx_packages()
    if missing:
        return BackendChoice(False, False, f"torch fp32 (ONNX Runtime can be faster on this CPU: {install})")
    return BackendChoice(True, False, "onnxruntime where it is faster than torch fp32 on the first batch")
