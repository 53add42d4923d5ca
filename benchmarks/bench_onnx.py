"""Is ONNX Runtime faster than PyTorch for the bundles' networks on this CPU? Images per second, side by side.

For each network (``isic_flexunet_resnet34`` at its inference size 256 x 256, ``cardiac_unet`` at 96 x 96; random
weights, ``network_def`` of the bundle's ``inference.json``), the same batches in memory go through, alternating
the methods so they see the same load:

* **torch fp32**: ``network(x)`` under ``torch.inference_mode``;
* **torch, medseg's plan**: what ``inference.json`` and ``medseg predict`` run here (``amp auto``: bf16 autocast on
  CPUs with bf16 instructions, channels_last where ``medseg.runtime`` turns it on);
* **onnxruntime fp32**: the network exported with ``torch.onnx.export`` and run by ONNX Runtime's CPU provider
  with as many threads as torch uses (graph optimisations on).

Before timing, the ONNX output is checked against torch fp32 (largest absolute difference of the logits, and the
share of pixels whose argmax differs). This benchmark is the measurement behind ``medseg predict --backend auto``
(ONNX Runtime on CPUs that infer in fp32, where it is faster; docs/runtime.md, benchmarks/README.md). It needs
``onnx``, ``onnxscript`` and ``onnxruntime``: ``pip install 'medseg[onnx]'``.

Example::

    python benchmarks/bench_onnx.py --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
NETWORKS = {"isic_flexunet_resnet34": (256, 8), "cardiac_unet": (96, 16)}  # bundle -> (input side, batch)


def build(bundle: str):
    """The bundle's inference network with random weights, in eval mode, and its input channels."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO_ROOT / "bundles" / bundle / "configs" / "inference.json"))
    network = parser.get_parsed_content("network_def").eval()
    return network, int(parser["in_channels"])


def export(network, x, path: Path) -> None:
    import torch

    torch.onnx.export(network, (x,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True)


def compare(bundle: str, side: int, batch: int, repeats: int, batches: int, plan, threads: int) -> None:
    """Check the ONNX export of one bundle's network against torch, then time the three methods."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from medseg.runtime import resolve_channels_last

    network, channels = build(bundle)
    inputs = [torch.rand(batch, channels, side, side) for _ in range(batches)]
    channels_last = resolve_channels_last("auto", network, plan)
    planned = copy.deepcopy(network).to(memory_format=torch.channels_last) if channels_last else network
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{bundle}.onnx"
        export(network, inputs[0], path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        reference = network(inputs[0]).numpy()
    onnx_out = session.run(None, {"image": inputs[0].numpy()})[0]
    differ = float(np.mean(onnx_out.argmax(1) != reference.argmax(1)))
    print(f"{bundle} ({batch} x {channels} x {side} x {side}): onnx vs torch fp32: largest |logit difference| "
          f"{np.abs(onnx_out - reference).max():.2e}, argmax differs on {differ:.2%} of pixels")

    def torch_plan(x):
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with plan.autocast():
            return planned(x)

    methods = {
        "torch fp32": network,
        "torch, medseg's plan": torch_plan,
        "onnxruntime fp32": lambda x: session.run(None, {"image": x.numpy()}),
    }
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    with torch.inference_mode():
        for fn in methods.values():  # warm-up: kernels, allocations, ORT's first run
            fn(inputs[0])
        for _ in range(repeats):
            for name, fn in methods.items():
                started = time.perf_counter()
                for x in inputs:
                    fn(x)
                seconds[name].append(time.perf_counter() - started)
    rates = {name: batch * batches / statistics.median(s) for name, s in seconds.items()}
    base = rates["torch, medseg's plan"]
    for name, rate in rates.items():
        print(f"  {name:22s} {rate:7.1f} images/s  ({rate / base:.2f}x medseg's plan)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the batches per method")
    parser.add_argument("--batches", type=int, default=4, help="batches per pass")
    args = parser.parse_args(argv)
    try:
        import onnxruntime as ort
    except ImportError:
        print("bench_onnx: onnxruntime is not installed (pip install onnx onnxscript onnxruntime)", file=sys.stderr)
        return 2
    import torch

    from medseg.runtime import resolve_amp

    threads = torch.get_num_threads()
    plan = resolve_amp("auto", "cpu")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {threads} threads, medseg's plan: "
          f"{'bf16' if plan.enabled else 'fp32'}")
    for bundle, (side, batch) in NETWORKS.items():
        compare(bundle, side, batch, args.repeats, args.batches, plan, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
