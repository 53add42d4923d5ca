"""The GPU check (issue 11, item 7): one prepared script to run where a CUDA device is at hand.

Everything goes through the commands a user runs, each timed, on phantom dermoscopy data made here (nothing is
downloaded):

1. **environment**: torch, the device, its compute capability and bf16 support, and the amp plan that ``amp: auto``
   resolves to there (``medseg.runtime.resolve_amp``);
2. **train, one process**: ``python -m monai.bundle run`` of the bundle's ``train.json`` for ``--epochs`` epochs with
   ``amp: auto`` (CUDA AMP on a GPU), and again with ``--amp false`` (fp32) for the ratio;
3. **train, torchrun**: ``torchrun --standalone --nproc_per_node=1`` with ``multi_gpu_train.json`` (NCCL on CUDA,
   gloo on CPU);
4. **predict a folder**: ``medseg package`` of the one-process run's checkpoint, then ``medseg predict`` over
   ``--predict_n`` dermoscopy-sized PNGs, TTA off and on (``flips+rot90``), images per second end to end.

Each training step's start-up line (``runtime: ... amp ...``) and per-epoch seconds (the epoch line's last field) are
kept; the second epoch is the steady one (the first holds cuDNN's autotuning and the first batches' loading). The
figures go to ``OUT/bench_gpu.json`` and a table on stdout. It runs on CPU too (then amp follows the CPU's bf16
support), which is how its test checks it; ``--quick`` shrinks everything for that.

Example (on the GPU machine, from the repository root)::

    python benchmarks/bench_gpu.py --out "$OUT"
    python benchmarks/bench_gpu.py --quick --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ .* (\d+(?:\.\d+)?)s$")


def environment(device: str) -> dict:
    """What this machine is and what ``amp: auto`` becomes on it."""
    import torch

    from medseg.runtime import describe_runtime, resolve_amp

    info = {"torch": torch.__version__, "python": sys.version.split()[0], "device": device,
            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        capability = ".".join(map(str, torch.cuda.get_device_capability(0)))
        info.update(gpu=torch.cuda.get_device_name(0), capability=capability, cuda=torch.version.cuda,
                    bf16_supported=torch.cuda.is_bf16_supported(), nccl=torch.distributed.is_nccl_available())
    info["runtime"] = describe_runtime(resolve_amp("auto", device), device=device)
    return info


def run_step(name: str, cmd: list[str], log: Path, env: dict) -> dict:
    """Run one command, its output kept in ``log``; returns its wall time, runtime line and epoch seconds."""
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    seconds = time.perf_counter() - started
    text = log.read_text()
    if done.returncode:
        tail = "\n".join(text.splitlines()[-15:])
        raise SystemExit(f"bench_gpu: step '{name}' failed (exit {done.returncode}); its log is {log}:\n{tail}")
    runtime = [line.split("runtime: ", 1)[1] for line in text.splitlines() if "runtime: " in line]
    epochs = {int(m.group(1)): float(m.group(2)) for m in map(EPOCH_LINE.search, text.splitlines()) if m}
    return {"seconds": round(seconds, 2), "runtime": runtime[0] if runtime else None,
            "epoch_seconds": [epochs[k] for k in sorted(epochs)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the data, runs, logs and bench_gpu.json")
    parser.add_argument("--bundle", default="isic_flexunet_resnet34")
    parser.add_argument("--n", type=int, default=64, help="phantom training cases")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--spatial_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--predict_n", type=int, default=64, help="PNGs for medseg predict")
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--height", type=int, default=560)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the test's CPU run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.spatial_size, args.batch_size, args.predict_n, args.width, args.height = 12, 64, 4, 4, 96, 80

    import torch
    from bench_inference import write_images

    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"bench_gpu: {out} is not empty; give a new or empty --out folder")
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = {**os.environ, "MEDSEG_HOME": str(out / "medseg_home"), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    python = sys.executable
    configs = REPO_ROOT / "bundles" / args.bundle / "configs"
    results: dict = {"environment": environment(device), "settings": vars(args), "steps": {}}
    print(results["environment"]["runtime"], flush=True)

    raw, data = out / "raw", out / "data"
    for step in (["phantom", "isic", "--out", str(raw), "--n", str(args.n)],
                 ["isic", "--src", str(raw), "--out", str(data)]):
        run_step(f"data_prep {step[0]}", [python, "-m", "data_prep", *step], out / f"data_prep_{step[0]}.log", env)

    common = ["--dataset_dir", str(data), "--max_epochs", str(args.epochs),
              "--spatial_size", f"[{args.spatial_size},{args.spatial_size}]", "--batch_size", str(args.batch_size)]
    trainings = {
        "train_amp_auto": [python, "-m", "monai.bundle", "run", "--config_file", str(configs / "train.json")],
        "train_fp32": [python, "-m", "monai.bundle", "run", "--config_file", str(configs / "train.json"),
                       "--amp", "false"],
        "torchrun_1_process": [str(Path(python).with_name("torchrun")), "--standalone", "--nproc_per_node=1",
                               "-m", "monai.bundle", "run", "--config_file",
                               f"['{configs / 'train.json'}','{configs / 'multi_gpu_train.json'}']"],
    }
    for name, cmd in trainings.items():
        results["steps"][name] = run_step(name, [*cmd, *common, "--output_dir", str(out / name)],
                                          out / f"{name}.log", env)
        print(f"{name}: {results['steps'][name]}", flush=True)

    images = out / "predict_input"
    write_images(images, args.predict_n, args.width, args.height)
    for tta in ("none", "flips+rot90"):
        package_dir = out / f"package_tta_{tta.replace('+', '_')}"
        run_step(f"package ({tta})",
                 [python, "-m", "medseg", "package", "--bundle", str(REPO_ROOT / "bundles" / args.bundle), "--run",
                  str(out / "train_amp_auto" / "model.pt"), "--out", str(package_dir), "--tta", tta],
                 out / f"package_{tta.replace('+', '_')}.log", env)
        package = next(p for p in package_dir.iterdir() if p.is_dir())
        name = f"predict_tta_{tta.replace('+', '_')}"
        step = run_step(name, [python, "-m", "medseg", "predict", "--bundle", str(package), "--input", str(images),
                               "--output", str(out / name), "--backend", "torch", "--device", device],
                        out / f"{name}.log", env)
        written = len(list((out / name).glob("*.png")))
        if written != args.predict_n:
            raise SystemExit(f"bench_gpu: {name} wrote {written} masks for {args.predict_n} images; "
                             f"see {out / name}.log")
        step["images_per_second"] = round(args.predict_n / step["seconds"], 2)
        results["steps"][name] = step
        print(f"{name}: {step}", flush=True)

    (out / "bench_gpu.json").write_text(json.dumps(results, indent=2))
    steady = {k: v["epoch_seconds"][-1] for k, v in results["steps"].items() if v.get("epoch_seconds")}
    print("\n| step | wall s | last epoch s | images/s |\n|---|---|---|---|")
    for name, step in results["steps"].items():
        print(f"| {name} | {step['seconds']} | {steady.get(name, '')} | {step.get('images_per_second', '')} |")
    if steady.get("train_fp32") and steady.get("train_amp_auto"):
        print(f"amp auto against fp32, last epoch: {steady['train_fp32'] / steady['train_amp_auto']:.2f}x faster")
    print(f"wrote {out / 'bench_gpu.json'}")
    shutil.rmtree(out / "raw", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
