"""The run's start-up summary line: what runs where, and why."""

from __future__ import annotations

import logging
from typing import Any

import torch

from medseg.runtime.amp import AmpPlan

logger = logging.getLogger("medseg.runtime")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        caps = getattr(torch.cpu, "get_capabilities", lambda: {})()
        name = caps.get("cpu_name") or "CPU"
        return f"cpu ({name}, {torch.backends.cpu.get_cpu_capability()})"
    return str(device)


def runtime_params(
    plan: AmpPlan, channels_last: bool = False, compile: bool = False, device: Any = None
) -> dict[str, str]:
    """The runtime choices as flat strings, for an MLflow run's parameters (``runtime.*``)."""
    device = torch.device(device) if device is not None else torch.device(plan.device_type)
    return {
        "runtime.device": str(device),
        "runtime.amp": plan.name,
        "runtime.amp_reason": plan.reason,
        "runtime.channels_last": str(bool(channels_last)).lower(),
        "runtime.compile": str(bool(compile)).lower(),
        "runtime.threads": str(torch.get_num_threads()),
    }


def describe_runtime(plan: AmpPlan, channels_last: bool = False, compile: bool = False, device: Any = None) -> str:
    """One line for the run's start-up, e.g.
    ``runtime: cpu (AMD EPYC, AVX2), amp off (CPU has no bf16 instructions), channels_last on, compile off, 2 threads``.
    """
    device = torch.device(device) if device is not None else torch.device(plan.device_type)
    amp = plan.name if plan.enabled else "off"
    return (
        f"runtime: {_device_name(device)}, amp {amp} ({plan.reason}), channels_last {'on' if channels_last else 'off'}"
        f", compile {'on' if compile else 'off'}, {torch.get_num_threads()} threads"
    )


def log_runtime(plan: AmpPlan, channels_last: bool = False, compile: bool = False, device: Any = None) -> str:
    """Log :func:`describe_runtime` at INFO on ``medseg.runtime`` (a bundle's ``initialize`` calls this); returns it."""
    line = describe_runtime(plan, channels_last, compile, device)
    logger.info(line)
    return line
