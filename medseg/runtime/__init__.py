"""Run at the speed the hardware allows: mixed precision chosen per device, channels_last, optional compile,
batched inference with I/O overlapped with compute, and ONNX Runtime where it is faster (``medseg predict``). Bundle
configs call these (``$medseg.runtime.resolve_amp(...)``).
"""

from medseg.runtime.amp import AmpPlan, cpu_supports_bf16, engine_amp, engine_amp_kwargs, resolve_amp
from medseg.runtime.describe import describe_runtime, log_runtime, runtime_params
from medseg.runtime.inference import PrefetchDataLoader, batched_inference, predict_batch, prefetch
from medseg.runtime.inferer import AmpInferer, to_float32
from medseg.runtime.network import (
    ChannelsLastPrepareBatch,
    compile_network,
    cpu_has_avx512,
    is_compiled,
    prepare_network,
    resolve_channels_last,
    to_channels_last,
    uncompile_network,
)
from medseg.runtime.onnx_backend import OnnxRuntimeNetwork, missing_onnx_packages
from medseg.runtime.optimizer import fused_optimizer

__all__ = [
    "AmpInferer",
    "AmpPlan",
    "batched_inference",
    "ChannelsLastPrepareBatch",
    "PrefetchDataLoader",
    "compile_network",
    "cpu_has_avx512",
    "cpu_supports_bf16",
    "describe_runtime",
    "engine_amp",
    "engine_amp_kwargs",
    "fused_optimizer",
    "is_compiled",
    "log_runtime",
    "missing_onnx_packages",
    "OnnxRuntimeNetwork",
    "predict_batch",
    "prefetch",
    "prepare_network",
    "resolve_amp",
    "resolve_channels_last",
    "runtime_params",
    "to_channels_last",
    "to_float32",
    "uncompile_network",
]
