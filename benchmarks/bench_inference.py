"""Images per second for batched folder inference (PNG in, masks out) against a raw batched ``model(x)`` loop.

Takes ``isic_flexunet_resnet34`` with random weights (saved as ``models/model.pt`` in a temporary copy of the
bundle), packages it with ``medseg package`` (TTA off, so every method below runs the network once per image unless
it says otherwise), writes N dermoscopy-sized PNGs (768 x 560 by default) and times, alternating the methods so
they see the same load:

* **raw**: ``network(x)`` in fp32 over batches of tensors already in memory at the network's input size (no I/O, no
  pre- or post-processing): the ceiling;
* **batched**: ``medseg.runtime.batched_inference`` on the bundle's own ``inference.json`` pieces
  (``medseg.sharing.inference.load_inference_bundle``, its inferer without the bundle's flip TTA): loading in a
  background thread, the network under the run's amp plan in channels_last where that is faster, ``Invertd`` back to
  the original size + argmax + PNG mask written in a writer thread;
* **batched + flips TTA**: the same with the 4 flip combinations averaged (4 passes);
* **medseg predict --backend B** for each of ``--backends`` (default ``torch`` and, where ``medseg[onnx]`` is
  installed, ``onnxruntime``): the real command path, ``medseg.sharing.predict.predict`` on the package (manifest
  model, batches of ``--batch-size`` through ``batched_inference``, masks and ``findings.csv`` written), end to end:
  its fixed cost (package check, model load) is printed apart. ONNX Runtime's export is made in the warm-up round
  (printed apart) and loaded from the cache (``$MEDSEG_HOME/cache/onnx``, here a temporary folder) in the timed
  rounds, with the first batch checked against PyTorch in each, as every ``medseg predict`` run does;
* **medseg predict (NAME)** for each ``--variant NAME=FILE``: the same, PyTorch backend, for a package of the bundle
  with ``FILE`` (an override of ``inference.json``, e.g. earlier preprocessing) applied, same weights, so a change of
  the pipeline is timed side by side with the current one under the same load;
* **medseg predict (TTA flips+rot90)** (``--tta``): the same, PyTorch backend, on the package made with
  ``--tta flips+rot90`` (8 network passes per image), so TTA's cost is timed beside the rest;
* **one image at a time** (``--per-image``): what ``medseg predict`` did before it batched: the package's model
  ``segment`` on each image, mask written.

Example:
    python benchmarks/bench_inference.py --n 64 --repeats 3
    python benchmarks/bench_inference.py --backends torch \
        --variant before=benchmarks/inference_preprocessing_2026-12-06.json
    python benchmarks/bench_inference.py --backends torch onnxruntime --tta
    python benchmarks/bench_inference.py --quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
BUNDLE = "isic_flexunet_resnet34"


def write_images(folder: Path, n: int, width: int, height: int) -> list[Path]:
    """``n`` RGB PNGs of a dark ellipse on skin-coloured noise."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:height, :width]
    paths = []
    for i in range(n):
        cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
        inside = ((rows - cy) / (0.2 * height)) ** 2 + ((cols - cx) / (0.25 * width)) ** 2 < 1
        image = rng.normal([200, 150, 130], 12, (height, width, 3))
        image[inside] *= 0.45
        path = folder / f"case_{i:04d}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def bundle_with_random_weights(root: Path) -> Path:
    """A copy of the bundle's configs with the network's initial weights as models/model.pt."""
    import torch
    from monai.bundle import ConfigParser

    folder = root / BUNDLE
    shutil.copytree(REPO_ROOT / "bundles" / BUNDLE / "configs", folder / "configs")
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser["bundle_root"] = str(folder)
    (folder / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), folder / "models" / "model.pt")
    return folder


def bundle_variant(source: Path, root: Path, name: str, override: Path) -> Path:
    """A copy of ``source`` (configs and weights) whose ``inference.json`` has ``override``'s keys set."""
    import json

    from monai.bundle import ConfigParser

    folder = root / name / BUNDLE
    shutil.copytree(source, folder)
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    for key, value in json.loads(override.read_text()).items():
        parser[key] = value
    ConfigParser.export_config_file(parser.get(), str(folder / "configs" / "inference.json"), indent=4)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=48, help="images")
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--height", type=int, default=560)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--amp", default="auto")
    parser.add_argument("--num-workers", type=int, default=0, help="batched: 0 = background thread, >0 processes")
    parser.add_argument("--per-image", action="store_true", help="also time predict's old one-image-at-a-time path")
    parser.add_argument("--backends", nargs="+", choices=("torch", "onnxruntime", "auto"), default=None,
                        help="medseg predict --backend values (default: torch, and onnxruntime where installed)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FILE",
                        help="also time medseg predict on a package with FILE's keys set in inference.json")
    parser.add_argument("--tta", action="store_true",
                        help="also time medseg predict on the package made with --tta flips+rot90 (the dermoscopy "
                             "bundles' default: 8 passes per image)")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: 4 small images, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.width, args.height, args.batch_size, args.repeats = 4, 96, 80, 2, 1

    import contextlib
    import io
    import logging

    import torch
    from monai.transforms import Compose

    from medseg.inference import FlipTTAInferer
    from medseg.runtime import batched_inference, describe_runtime, resolve_amp, resolve_channels_last
    from medseg.runtime.onnx_backend import missing_onnx_packages
    from medseg.sharing.check import check_bundle
    from medseg.sharing.inference import load_inference_bundle
    from medseg.sharing.inputs import write_png_mask
    from medseg.sharing.manifest import read_manifest
    from medseg.sharing.package import package
    from medseg.sharing.predict import predict
    from medseg.sharing.shared_model import load_shared_model

    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.WARNING)
    tmp = tempfile.TemporaryDirectory()
    root = Path(tmp.name)
    os.environ["MEDSEG_HOME"] = str(root / "home")  # the ONNX export cache of this run only
    backends = args.backends or ["torch"] + ([] if missing_onnx_packages() else ["onnxruntime"])
    load_before = os.getloadavg()
    paths = write_images(root / "images", args.n, args.width, args.height)
    source = bundle_with_random_weights(root)
    with contextlib.redirect_stderr(io.StringIO()):  # packaging's own progress lines
        packaged = package(
            source, str(source / "models" / "model.pt"), root / "dist", tta={}, batch_size=args.batch_size
        )
    variants = {}
    if args.tta:
        from medseg.commands.package import TTA_PRESETS

        with contextlib.redirect_stderr(io.StringIO()):
            variants["TTA flips+rot90"] = package(source, str(source / "models" / "model.pt"), root / "dist" / "tta",
                                                  tta=TTA_PRESETS["flips+rot90"], batch_size=args.batch_size)
    for spec in args.variant:
        name, _, file = spec.partition("=")
        if not name or not Path(file).is_file():
            parser.error(f"--variant {spec}: give NAME=FILE with an existing override file of inference.json")
        folder = bundle_variant(source, root / "variants", name, Path(file))
        with contextlib.redirect_stderr(io.StringIO()):
            variants[name] = package(folder, str(folder / "models" / "model.pt"), root / "dist" / name, tta={},
                                     batch_size=args.batch_size)  # fmt: skip
    started = time.perf_counter()
    check_bundle(packaged.folder)
    shared = load_shared_model(packaged.folder, read_manifest(packaged.folder), backend="torch")
    predict_fixed_s = time.perf_counter() - started
    bundle = load_inference_bundle(source, "cpu")
    # the bundle's inferer runs its flip (+ 90-degree) TTA; the batched rows choose theirs with tta=
    inferer = bundle.inferer.inferer if isinstance(bundle.inferer, FlipTTAInferer) else bundle.inferer
    plan = resolve_amp(args.amp, "cpu")
    channels_last = resolve_channels_last("auto", bundle.network, plan)
    bundle.network.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    print(describe_runtime(plan, channels_last, False, "cpu"))
    pipeline = Compose([bundle.load, bundle.preprocessing])
    binary = max(bundle.labels) == 1
    input_shape = tuple(pipeline({"image": str(paths[0])})["image"].shape)
    raw_network = load_inference_bundle(root / BUNDLE, "cpu").network  # fp32, channels-first, same weights
    tensors = torch.rand(args.n, *input_shape)

    def raw() -> None:
        with torch.no_grad():
            for start in range(0, args.n, args.batch_size):
                raw_network(tensors[start : start + args.batch_size])

    def batched(tta: str) -> None:
        out = root / f"masks_{tta}"
        out.mkdir(exist_ok=True)
        items = [{"image": str(p), "name": p.stem} for p in paths]

        def write(source: dict, result: dict) -> None:
            write_png_mask(result["pred"][0].numpy(), out / f"{source['name']}_mask.png", binary)

        for _pair in batched_inference(
            items,
            bundle.network,
            pipeline,
            bundle.postprocessing,
            inferer=inferer,
            amp_plan=plan,
            channels_last=channels_last,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            tta=tta,
            sink=write,
        ):
            pass

    notes: dict[str, list[str]] = {}

    def medseg_predict(backend: str, folder: Path = packaged.folder, note: str = "") -> None:
        out = root / "predicted"
        shutil.rmtree(out, ignore_errors=True)
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
            result = predict(folder, root / "images", out, device="cpu", batch_size=args.batch_size,
                             backend=backend)  # fmt: skip
        notes[note or backend] = result.runtime

    def per_image() -> None:
        out = root / "masks_single"
        out.mkdir(exist_ok=True)
        for path in paths:
            write_png_mask(shared.segment({"image": str(path)}, str(path)), out / f"{path.stem}_mask.png", binary)

    methods = {
        "raw model(x) fp32": raw,
        "batched": lambda: batched("none"),
        "batched + flips TTA": lambda: batched("flips"),
        **{f"medseg predict --backend {b}": (lambda b=b: medseg_predict(b)) for b in backends},
        **{f"medseg predict ({n})": (lambda v=v, n=n: medseg_predict("torch", v.folder, n))
           for n, v in variants.items()},  # fmt: skip
    }
    if args.per_image:
        methods["one image at a time (old)"] = per_image
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats + 1):
        for name, run in methods.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    load_after = os.getloadavg()
    base = args.n / statistics.median(times["raw model(x) fp32"][1:])
    print(
        f"\n{args.n} PNGs {args.width}x{args.height} -> network input {input_shape}, batch {args.batch_size}, "
        f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats} rounds after a warm-up; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(f"{'method':30s} {'images/s':>9s} {'vs raw':>7s}")
    for name, values in times.items():
        rate = args.n / statistics.median(values[1:])
        print(f"{name:30s} {rate:9.2f} {rate / base:7.2f}")
    print(f"medseg predict includes {predict_fixed_s:.1f}s of fixed cost per run (package check, model load)")
    for name, variant in {"current": packaged, **variants}.items():
        steps = [
            f"{s['name']}({s['params'].get('anti_aliasing_filter', 'gaussian')} filter)" if s["name"] == "resize"
            else s["name"]
            for s in read_manifest(variant.folder)["preprocessing"]
        ]  # fmt: skip
        print(f"package {name}: preprocessing " + " -> ".join(steps))
    for backend in backends:
        name = f"medseg predict --backend {backend}"
        print(f"{name}: warm-up round {times[name][0]:.1f}s (ONNX Runtime: the export), then "
              f"{statistics.median(times[name][1:]):.1f}s; " + "; ".join(notes[backend]))  # fmt: skip
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
