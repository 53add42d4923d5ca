"""Put a network on its device in the memory format that runs fastest, optionally compiled, and feed it to match."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines import PrepareBatchDefault, default_prepare_batch

from medseg.bundle.errors import BundleInputError
from medseg.runtime.amp import AmpPlan

SWITCH_SETTINGS = ("auto", "true", "false")


def _switch(name: str, setting: Any, allowed: tuple[str, ...]) -> str:
    if isinstance(setting, bool):
        return "true" if setting else "false"
    if isinstance(setting, str) and setting.strip().lower() in allowed:
        return setting.strip().lower()
    raise BundleInputError(f"{name}: {setting!r} is not a valid setting; use one of {', '.join(allowed)}")


def cpu_has_avx512() -> bool:
    """Whether torch's CPU kernels run with AVX-512 here (``torch.backends.cpu.get_cpu_capability()``)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


def resolve_channels_last(setting: Any, network: torch.nn.Module, plan: AmpPlan | None = None) -> bool:
    """Whether to run ``network`` (and its inputs) in ``torch.channels_last``.

    The ``auto`` rule, from measurements (benchmarks/README.md, docs/runtime.md): on whenever autocast is on
    (oneDNN's bf16 and cuDNN's tensor-core kernels work in NHWC: ResNet34 1.24x and the cardiac UNet 1.12x faster on
    top of bf16 on a CPU with AMX); in fp32 only for ImageNet-style encoders (``FlexibleUNet``) on CUDA or on an
    AVX-512 CPU (ResNet34 1.20x there), not on an AVX2-only CPU (the ResNet34 bundle epoch was 1.30x *slower* with it
    on an AVX2 EPYC) and never for MONAI's small ``UNet``/``DynUNet`` in fp32 (1.02x with AVX-512, 0.79x with AVX2).

    Args:
        setting: ``auto``, ``true`` or ``false`` (or a bool).
        network: the network (before or after it is moved).
        plan: the run's AMP plan (its ``device_type`` says where the network runs; CPU when None).

    Returns:
        True to use channels_last.

    Raises:
        BundleInputError: ``setting`` is not one of those.
    """
    value = _switch("channels_last", setting, SWITCH_SETTINGS)
    if value != "auto":
        return value == "true"
    if plan is not None and plan.enabled:
        return True
    from monai.networks.nets import FlexibleUNet

    if not isinstance(network, FlexibleUNet):
        return False
    device_type = plan.device_type if plan is not None else "cpu"
    return device_type == "cuda" or (device_type == "cpu" and cpu_has_avx512())


class _CompiledForward:
    """``network.forward`` compiled, falling back to eager (one warning) when compiling fails on this platform.

    Compiling happens at the first call (and again for a new shape or mode), so that is where a missing C++ compiler
    or an unsupported operator shows; the failing call is rerun eagerly, so a genuine error in the inputs still
    raises. MONAI's ``MetaTensor`` is passed as a plain tensor (dynamo does not trace its ``__torch_function__``).
    """

    def __init__(self, eager: Any, **compile_kwargs: Any) -> None:
        self.eager = eager
        self.compiled = torch.compile(eager, **compile_kwargs)
        self.failed = False

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return self.eager(inputs, *args, **kwargs)
        if hasattr(inputs, "as_tensor"):
            inputs = inputs.as_tensor()
        try:
            return self.compiled(inputs, *args, **kwargs)
        except Exception as exc:
            self.failed = True
            first_line = (str(exc).strip().splitlines() or [""])[0][:200]
            warnings.warn(
                f"compile: torch.compile failed on this platform ({type(exc).__name__}: {first_line}); running eager",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.eager(inputs, *args, **kwargs)


def compile_network(network: torch.nn.Module, **compile_kwargs: Any) -> torch.nn.Module:
    """Compile ``network.forward`` in place with an eager fallback; the module, its ``state_dict`` keys and checkpoints
    stay as they are (``torch.compile(network)`` would prefix every key with ``_orig_mod.``).

    Undo with :func:`uncompile_network`. ``torch.compile`` itself failing (no dynamo on this platform) warns once and
    leaves the network eager.
    """
    try:
        network.forward = _CompiledForward(network.forward, **compile_kwargs)
    except Exception as exc:
        warnings.warn(
            f"compile: torch.compile is unavailable here ({type(exc).__name__}: {exc}); running eager",
            RuntimeWarning,
            stacklevel=2,
        )
    return network


def uncompile_network(network: torch.nn.Module) -> torch.nn.Module:
    """Remove what :func:`compile_network` added."""
    if isinstance(network.__dict__.get("forward"), _CompiledForward):
        del network.forward
    return network


def is_compiled(network: torch.nn.Module) -> bool:
    """Whether :func:`compile_network` compiled ``network`` and compiling has not failed (so far)."""
    forward = network.__dict__.get("forward")
    return isinstance(forward, _CompiledForward) and not forward.failed


def prepare_network(
    network: torch.nn.Module,
    device: str | torch.device = "cpu",
    channels_last: Any = "auto",
    compile: Any = False,
    amp_plan: AmpPlan | None = None,
    compile_kwargs: dict | None = None,
) -> torch.nn.Module:
    """Move ``network`` to ``device``, in channels_last where that is faster, optionally compiled; returns it.

    The same module object is returned (checkpoint savers and optimisers built from it keep working, and the
    ``state_dict`` keys do not change). Feed channels_last networks channels_last inputs
    (:class:`ChannelsLastPrepareBatch`), or the first layer converts them on every step.

    Args:
        network: the network.
        device: where it runs.
        channels_last: ``auto`` (:func:`resolve_channels_last`), ``true``/``false`` or an already resolved bool.
        compile: ``true`` to compile with ``torch.compile`` (off by default: on the bundles' short CPU runs compile
            time is not won back, see benchmarks/README.md).
        amp_plan: the run's AMP plan (used by the ``auto`` channels_last rule).
        compile_kwargs: passed to ``torch.compile``.

    Raises:
        BundleInputError: a setting has a value that is not allowed.
    """
    use_compile = _switch("compile", compile, ("true", "false")) == "true"
    use_channels_last = resolve_channels_last(channels_last, network, amp_plan)
    network = network.to(device)
    if use_channels_last:
        network = network.to(memory_format=torch.channels_last)
    if use_compile:
        compile_network(network, **(compile_kwargs or {}))
    return network


def to_channels_last(image: Any) -> Any:
    """A 4D batch (B, C, H, W) in channels_last; anything else unchanged."""
    if isinstance(image, torch.Tensor) and image.ndim == 4:
        return image.contiguous(memory_format=torch.channels_last)
    return image


class ChannelsLastPrepareBatch(PrepareBatchDefault):
    """MONAI's default ``prepare_batch`` (image and label to the device) with the image in channels_last.

    For ``SupervisedTrainer(prepare_batch=...)`` and ``SupervisedEvaluator(prepare_batch=...)``. The label keeps its
    layout (the loss reads it, not a convolution).

    ``plain_tensors`` hands the engine plain ``torch.Tensor``s instead of MONAI ``MetaTensor``s. Every operation on a
    ``MetaTensor`` goes through its ``__torch_function__``, which copies metadata; in a training step (forward,
    autocast casts, loss, backward) that cost the ResNet34 bundle 0.13 s per iteration of 8 x 224 x 224 in bf16, 15%
    of the step (benchmarks/README.md). Training needs no metadata; evaluation and inference keep it for ``Invertd``.

    Args:
        enabled: False makes the image layout exactly ``PrepareBatchDefault``'s (so a config can pass its resolved
            switch).
        plain_tensors: return image and label as plain tensors (``MetaTensor.as_tensor()``).
    """

    def __init__(self, enabled: bool = True, plain_tensors: bool = False) -> None:
        self.enabled = bool(enabled)
        self.plain_tensors = bool(plain_tensors)

    def __call__(
        self, batchdata: Any, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> Any:
        prepared = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        if self.plain_tensors:
            prepared = tuple(map(_plain, prepared)) if isinstance(prepared, tuple) else _plain(prepared)
        if not self.enabled:
            return prepared
        if isinstance(prepared, tuple):
            return (to_channels_last(prepared[0]), *prepared[1:])
        return to_channels_last(prepared)


def _plain(value: Any) -> Any:
    """A ``MetaTensor`` as a plain tensor (same storage); anything else unchanged."""
    return value.as_tensor() if isinstance(value, MetaTensor) else value
