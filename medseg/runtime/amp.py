"""Mixed precision chosen at run time: one ``amp`` setting, resolved per device into an :class:`AmpPlan`.

Why not MONAI's own ``amp`` switch alone: ``SupervisedTrainer`` / ``SupervisedEvaluator`` (monai 1.6) always enter
``torch.autocast("cuda", **amp_kwargs)`` and the trainer always builds a ``torch.cuda.amp.GradScaler`` when
``amp=True``. On a CPU that autocast is a silent no-op (fp32), passing ``amp_kwargs={"device_type": "cpu"}`` fails
with ``TypeError: got multiple values for argument 'device_type'``, and bf16 needs no loss scaling at all. So medseg
puts the autocast in the inferer (:class:`medseg.runtime.AmpInferer`, any device, any dtype) and lets the engine's own
``amp`` (autocast + GradScaler) run only for CUDA fp16, where the scaler is needed: :func:`engine_amp`,
:func:`engine_amp_kwargs`.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from medseg.bundle.errors import BundleInputError

AMP_SETTINGS = ("auto", "true", "false", "bf16", "fp16")
# CPU features with native bf16 arithmetic (x86: AVX-512 BF16 dot products, AMX tiles). Without them oneDNN emulates
# bf16 and a training step runs 7-14x slower than fp32 (measured on an AVX2 EPYC, benchmarks/README.md).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
_warned: set[str] = set()


@dataclass(frozen=True)
class AmpPlan:
    """What mixed precision a run uses.

    Attributes:
        enabled: whether autocast is on.
        dtype: the autocast dtype (``torch.bfloat16`` or ``torch.float16``); None when off.
        device_type: ``"cpu"``, ``"cuda"``, ... (the ``torch.autocast`` device type).
        reason: why, in words (for the start-up summary and the MLflow run).
    """

    enabled: bool
    dtype: torch.dtype | None
    device_type: str
    reason: str

    @property
    def name(self) -> str:
        """``"bf16"``, ``"fp16"`` or ``"off"``."""
        if not self.enabled:
            return "off"
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, str(self.dtype))

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none."""
        return self.enabled and self.dtype == torch.float16

    def autocast(self) -> AbstractContextManager:
        """``torch.autocast`` for this plan (a no-op context when off)."""
        if not self.enabled:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def _cpu_flags() -> set[str]:
    """CPU feature names: torch's public ``torch.cpu.get_capabilities()``, else ``/proc/cpuinfo`` flags."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        try:
            return {name for name, value in get_capabilities().items() if value is True}
        except Exception:  # an exotic platform cpuinfo cannot read: fall back to the kernel's list
            pass
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX-512 BF16 or AMX-BF16); cached."""
    return bool(_cpu_flags() & set(BF16_CPU_FLAGS))


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _normalise(setting: Any) -> str:
    if isinstance(setting, bool):
        return "true" if setting else "false"
    if isinstance(setting, str) and setting.strip().lower() in AMP_SETTINGS:
        return setting.strip().lower()
    raise BundleInputError(
        f"amp: {setting!r} is not a valid setting; use one of auto, true, false, bf16, fp16 "
        "(auto: bf16/fp16 where the hardware runs it faster, false: fp32)"
    )


def _cuda_dtype(setting: str) -> tuple[torch.dtype, str]:
    bf16_ok = torch.cuda.is_bf16_supported()
    if setting == "fp16":
        return torch.float16, "fp16 requested"
    if setting == "bf16" and not bf16_ok:
        _warn_once("amp: bf16 but this GPU has no bf16 support; running fp16")
        return torch.float16, "bf16 requested, GPU lacks bf16: fp16"
    if bf16_ok:
        return torch.bfloat16, "CUDA with bf16 support" if setting != "bf16" else "bf16 requested"
    return torch.float16, "CUDA without bf16 support"


def resolve_amp(setting: Any = "auto", device: str | torch.device = "cpu") -> AmpPlan:
    """Turn the ``amp`` setting into what runs on ``device``.

    * ``auto`` (default): CUDA -> bf16 where the GPU supports it, else fp16; CPU -> bf16 only where the CPU has bf16
      instructions (:func:`cpu_supports_bf16`), else fp32; other devices -> fp32.
    * ``true``: as ``auto``, but warns once when the CPU has no bf16 instructions (and runs fp32).
    * ``false``: fp32.
    * ``bf16`` / ``fp16``: that dtype (bf16 on a CPU without bf16 instructions runs, slowly, with a warning; fp16
      exists only for CUDA and otherwise warns and runs fp32).

    Args:
        setting: one of ``auto``, ``true``, ``false``, ``bf16``, ``fp16`` (or a bool).
        device: the device the network runs on.

    Returns:
        the plan.

    Raises:
        BundleInputError: ``setting`` is none of those (one line naming the allowed values).
    """
    value = _normalise(setting)
    device_type = torch.device(device).type
    if value == "false":
        return AmpPlan(False, None, device_type, "amp: false")
    if device_type == "cuda":
        dtype, reason = _cuda_dtype(value)
        return AmpPlan(True, dtype, "cuda", reason)
    if device_type == "cpu":
        has_bf16 = cpu_supports_bf16()
        if value == "bf16":
            if not has_bf16:
                _warn_once("amp: bf16 but this CPU has no bf16 instructions; bf16 will run much slower than fp32")
            return AmpPlan(True, torch.bfloat16, "cpu", "bf16 requested")
        if value == "fp16":
            _warn_once("amp: fp16 needs a CUDA GPU; running fp32 (use bf16 or auto on a CPU)")
            return AmpPlan(False, None, "cpu", "fp16 requested on CPU: fp32")
        if has_bf16:
            return AmpPlan(True, torch.bfloat16, "cpu", "CPU has bf16 instructions")
        if value == "true":
            _warn_once("amp: true but this CPU has no bf16 instructions; running fp32")
        return AmpPlan(False, None, "cpu", "CPU has no bf16 instructions")
    if value == "auto":
        return AmpPlan(False, None, device_type, f"no automatic mixed precision rule for {device_type}")
    dtype = torch.float16 if value == "fp16" else torch.bfloat16
    return AmpPlan(True, dtype, device_type, f"{value} requested")


def engine_amp(plan: AmpPlan) -> bool:
    """The ``amp`` argument for MONAI's ``SupervisedTrainer``: True only where MONAI's GradScaler is needed (fp16).

    MONAI's engines autocast for ``"cuda"`` only and always add a GradScaler; every other case runs its autocast
    in :class:`medseg.runtime.AmpInferer`.
    """
    return plan.needs_grad_scaler and plan.device_type == "cuda"


def engine_amp_kwargs(plan: AmpPlan) -> dict:
    """The ``amp_kwargs`` argument for MONAI's engines to go with :func:`engine_amp`."""
    return {"dtype": plan.dtype} if engine_amp(plan) else {}
