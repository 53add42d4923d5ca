"""Run a network with ONNX Runtime where that is faster than PyTorch: CPUs that infer in fp32.

Measured with ``benchmarks/bench_onnx.py`` (benchmarks/README.md): on a 2-core AVX2 CPU, where medseg infers in
fp32, ONNX Runtime's CPU provider ran the ResNet34 U-Net of ``isic_flexunet_resnet34`` 1.99x as fast as PyTorch and
the cardiac UNet 1.04x; on a CPU with AVX-512 BF16, medseg's bf16 path was 1.6-1.8x faster than ONNX Runtime. So
this is an option for CPUs without bf16, and even there it is kept only where it measures faster.

:class:`OnnxRuntimeNetwork` wraps a network in eval mode and is called like it (a float ``(N, C, H, W)`` tensor in,
logits out). On its first call it

1. exports the network with ``torch.onnx.export(dynamo=True)``, batch, height and width left free, or loads the
   export from ``cache_dir`` (a file named by the caller's key: the weights' sha256 and the network, so the export,
   tens of seconds for a ResNet34 U-Net on 2 cores, is paid once per model and machine);
2. runs that first batch through both PyTorch (fp32) and ONNX Runtime and requires the same softmax within
   ``tolerance``, which also catches a cache file that was changed or an export that went wrong (the first batch of
   every later input shape is checked the same way);
3. times both runs of that batch and keeps ONNX Runtime only where it was faster (``require=True`` keeps it
   whenever the check passed). Each is the first run of its backend in the process, so both include their
   warm-up; timing warm runs instead cost two more runs of the batch, which on a folder of a few dozen images
   took more than ONNX Runtime saved (benchmarks/README.md).

Whatever fails (an operator the exporter lacks, a different output, a slower run, an error later on) leaves
PyTorch running the network from then on, and :attr:`OnnxRuntimeNetwork.choice` says why in one line. A checked
batch returns PyTorch's own logits. ``onnx``, ``onnxscript`` and ``onnxruntime``
are optional (``pip install 'medseg[onnx]'``) and imported only here, when used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["ONNX_PACKAGES", "OnnxRuntimeNetwork", "missing_onnx_packages"]

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def missing_onnx_packages() -> list[str]:
    """The packages of :data:`ONNX_PACKAGES` that cannot be imported here (empty: ONNX Runtime can be used)."""
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


class OnnxRuntimeNetwork:
    """A network run by ONNX Runtime's CPU provider once its export matched PyTorch and ran faster; else by PyTorch.

    Args:
        network: a ``torch.nn.Module`` in eval mode on the CPU, taking ``(N, C, H, W)``.
        key: what identifies the network and its weights (e.g. the weights file's sha256 and the network's name and
            arguments); the cached export is found by it.
        cache_dir: where exports are kept between runs; None exports in memory every time.
        require: keep ONNX Runtime whenever its output matches, even if PyTorch was faster on the first batch.
        tolerance: the largest difference of the softmax of the two outputs that counts as the same.
        threads: ONNX Runtime's intra-op threads (default: ``torch.get_num_threads()``, as PyTorch runs).

    Attributes:
        backend: ``"onnxruntime"`` or ``"torch"`` after the first call, None before.
        choice: one line saying which backend runs the network and why (None before the first call).
    """

    def __init__(self, network: Any, key: str, cache_dir: str | Path | None = None, require: bool = False,
                 tolerance: float = 1e-4, threads: int | None = None) -> None:  # fmt: skip
        self.network = network
        self.key = key
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.require = require
        self.tolerance = tolerance
        self.threads = threads
        self.backend: str | None = None
        self.choice: str | None = None
        self._session: Any = None
        self._checked: set[tuple[int, ...]] = set()  # input shapes (C, H, W) on which ONNX Runtime matched PyTorch

    def __call__(self, images: Any) -> Any:
        """Logits of a float ``(N, C, H, W)`` batch, as ``network(images)`` gives them (on the CPU, fp32)."""
        if self.backend is None:
            return self._first_call(images)
        if self._session is None:
            return self.network(images)
        if tuple(images.shape[1:]) not in self._checked:
            return self._check(images)[0]
        try:
            return self._run(images)
        except Exception as exc:  # noqa: BLE001 (whatever ONNX Runtime raises, PyTorch gives this batch and the rest)
            return self._keep_torch(self._reference(images), f"ONNX Runtime failed ({_first_line(exc)})")

    # ------------------------------------------------------------------ first call: export, check, time

    def _first_call(self, images: Any) -> Any:
        try:
            self._session, cached = self._load_or_export(images)
        except Exception as exc:  # noqa: BLE001 (the exporter and ONNX Runtime raise many kinds; PyTorch runs instead)
            return self._keep_torch(self._reference(images), f"could not be exported to ONNX ({_first_line(exc)})")
        reference, passed, (torch_seconds, ort_seconds) = self._check(images)
        if not passed:
            if cached is not None:
                cached.unlink(missing_ok=True)  # a changed or stale file: the next run exports again
            return reference
        speed = f"{torch_seconds / ort_seconds:.2f}x PyTorch's speed on the first batch" if ort_seconds > 0 else ""
        if ort_seconds >= torch_seconds and not self.require:
            return self._keep_torch(reference, f"ONNX Runtime was not faster ({speed})")
        self.backend = "onnxruntime"
        self.choice = f"onnxruntime ({speed}; the same softmax within {self.tolerance:g})"
        return reference

    def _check(self, images: Any) -> tuple[Any, bool, tuple[float, float]]:
        """PyTorch's logits for a batch of a shape not seen yet, whether ONNX Runtime gave the same, and how long
        each took (seconds; the first call chooses the backend by them, so that the check is also the timing and
        costs one ONNX Runtime run of the batch, no more).

        Each new input shape is checked once: the export leaves height and width free, and this makes sure it did
        not bake in anything of the first shape. Where the check fails, PyTorch runs the network from now on.
        """
        import torch

        reference, torch_seconds = _timed(lambda: self._reference(images))
        size = "x".join(str(int(n)) for n in images.shape[2:])
        try:
            output, ort_seconds = _timed(lambda: self._run(images))
        except Exception as exc:  # noqa: BLE001 (see __call__)
            reason = f"ONNX Runtime failed on {size} inputs ({_first_line(exc)})"
            return self._keep_torch(reference, reason), False, (torch_seconds, 0.0)
        seconds = (torch_seconds, ort_seconds)
        if output.shape != reference.shape:
            reason = f"its ONNX export gives {tuple(output.shape)} on {size} inputs, PyTorch {tuple(reference.shape)}"
            return self._keep_torch(reference, reason), False, seconds
        difference = float((torch.softmax(output, 1) - torch.softmax(reference.float(), 1)).abs().max())
        if not difference <= self.tolerance:  # also NaN
            reason = f"its ONNX export differs from PyTorch on {size} inputs (softmax by {difference:.1e})"
            return self._keep_torch(reference, reason), False, seconds
        self._checked.add(tuple(images.shape[1:]))
        return reference, True, seconds

    def _reference(self, images: Any) -> Any:
        """PyTorch's fp32 logits, also under an autocast of the caller's (ONNX Runtime runs the fp32 graph)."""
        import torch

        with torch.autocast("cpu", enabled=False), torch.no_grad():
            return self.network(images.float())

    def _keep_torch(self, reference: Any, reason: str) -> Any:
        self._session = None
        self.backend = "torch"
        self.choice = f"torch: {reason}"
        return reference

    def _run(self, images: Any) -> Any:
        import torch

        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self._session.run(None, {self._session.get_inputs()[0].name: array})
        return torch.from_numpy(logits)

    # ------------------------------------------------------------------ the export and its cache

    def _cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        import onnxscript
        import torch

        identity = json.dumps({"key": self.key, "torch": torch.__version__, "onnxscript": onnxscript.__version__})
        return self.cache_dir / f"{hashlib.sha256(identity.encode()).hexdigest()}.onnx"

    def _load_or_export(self, images: Any) -> tuple[Any, Path | None]:
        """An ONNX Runtime session and the cache file it came from (None: exported now)."""
        path = self._cache_file()
        if path is not None and path.is_file():
            try:
                return self._open(path.read_bytes()), path
            except Exception:  # noqa: BLE001 (an unreadable or truncated file is exported again)
                path.unlink(missing_ok=True)
        model = self._export(images)
        if path is not None:
            _write_atomically(path, model)
        return self._open(model), None

    def _export(self, images: Any) -> bytes:
        import torch
        from torch.export import Dim

        # two examples, so that the exporter does not specialise the batch dimension to 1
        example = images[:1].detach().to("cpu", torch.float32).repeat(2, 1, 1, 1)
        # an autocast of the caller's would put bf16 casts into the graph: ONNX Runtime runs the fp32 graph
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.autocast("cpu", enabled=False):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                self.network, (example,), None, input_names=["image"], output_names=["logits"],
                dynamic_shapes=({0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC},), dynamo=True, verbose=False,
            )  # fmt: skip
        return program.model_proto.SerializeToString()

    def _open(self, model: bytes) -> Any:
        import onnxruntime
        import torch

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are not the user's
        return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _timed(call) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def _write_atomically(path: Path, data: bytes) -> None:
    """Write the cache file whole or not at all; a cache that cannot be written only costs the next run an export."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
