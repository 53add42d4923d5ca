"""nnU-Net v2 as a recipe of ``bench_accuracy.py``: same fold, same training time, scored by medseg's metrics.

nnU-Net lives in its own virtual environment (its dependencies are not medseg's), for example::

    python3.11 -m venv /tmp/nnunet && /tmp/nnunet/bin/pip install torch==2.14.1 nnunetv2==2.8.1

For one cross-validation fold (the folder ``medseg.strategies.kfold.write_cv_fold`` wrote), this

1. writes an nnU-Net raw dataset of the fold's training and validation cases (``imagesTr``/``labelsTr``; the scored
   cases go to ``imagesTs`` only, so nnU-Net's fingerprint never sees them) and ``splits_final.json`` with the same
   training/validation split medseg trains on;
2. runs ``nnUNetv2_plan_and_preprocess -c 2d``: nnU-Net plans its own network, patch, batch and normalisation;
3. runs ``nnunet_budget_train.py`` in nnU-Net's venv: nnU-Net's trainer with its epochs fitted to the budget, then
   its predictor (mirroring TTA) on the scored cases;
4. scores the predictions against the fold's labels with :func:`medseg.metrics.score_label_maps`, the function behind
   the summaries of medseg's own recipes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

DRIVER = Path(__file__).with_name("nnunet_budget_train.py")
DATASET = "Dataset501_MedsegFold"


def _channel_names(image: Path, modality: dict) -> dict:
    from PIL import Image

    with Image.open(image) as im:
        bands = im.getbands()
    if len(bands) == 1:
        return {"0": modality.get("0", "image")}
    return {str(i): band for i, band in enumerate(bands)}  # nnU-Net reads an RGB PNG as 3 channels


def write_raw_dataset(fold_dir: Path, raw: Path) -> dict:
    """The fold as an nnU-Net raw dataset under ``raw``; returns the fold's datalist."""
    datalist = json.loads((fold_dir / "datalist.json").read_text())
    if raw.exists():
        shutil.rmtree(raw)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (raw / sub).mkdir(parents=True)
    train = datalist["training"] + datalist["validation"]
    for item in train:
        shutil.copyfile(item["image"], raw / "imagesTr" / f"{item['case_id']}_0000.png")
        shutil.copyfile(item["label"], raw / "labelsTr" / f"{item['case_id']}.png")
    for item in datalist["testing"]:
        shutil.copyfile(item["image"], raw / "imagesTs" / f"{item['case_id']}_0000.png")
    labels = {name: int(value) for value, name in datalist["labels"].items()}
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": _channel_names(Path(train[0]["image"]), datalist.get("modality", {})),
        "labels": labels, "numTraining": len(train), "file_ending": ".png"}, indent=2))
    return datalist


def nnunet_fold(fold_dir: Path, out: Path, budget_seconds: float, nnunet_python: Path,
                iterations_per_epoch: int | None = None) -> dict:
    """Train and predict nnU-Net on one fold within ``budget_seconds``; return a summary like medseg's evaluation."""
    from PIL import Image

    from medseg.metrics import score_label_maps

    roots = {key: out / key for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **{key: str(path) for key, path in roots.items()}}
    datalist = write_raw_dataset(fold_dir, roots["nnUNet_raw"] / DATASET)
    bin_dir = nnunet_python.parent
    subprocess.run([str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", DATASET.split("_")[0][7:], "-c", "2d",
                    "-np", "1", "--verify_dataset_integrity"], env=env, check=True)
    split = [{"train": [i["case_id"] for i in datalist["training"]],
              "val": [i["case_id"] for i in datalist["validation"]]}]
    (roots["nnUNet_preprocessed"] / DATASET / "splits_final.json").write_text(json.dumps(split))
    predictions = out / "predictions"
    result = out / "nnunet_result.json"
    extra = ["--iterations_per_epoch", str(iterations_per_epoch)] if iterations_per_epoch else []
    subprocess.run([str(nnunet_python), str(DRIVER), DATASET, str(budget_seconds),
                    str(roots["nnUNet_raw"] / DATASET / "imagesTs"), str(predictions), str(result), *extra],
                   env=env, check=True)
    run = json.loads(result.read_text())
    cases = datalist["testing"]
    preds = [np.asarray(Image.open(predictions / f"{i['case_id']}.png")) for i in cases]
    gts = [np.asarray(Image.open(i["label"])) for i in cases]
    class_names = [name for _, name in sorted(datalist["labels"].items(), key=lambda kv: int(kv[0]))]
    summary = score_label_maps([i["case_id"] for i in cases], preds, gts, class_names).summary()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    summary["train_seconds"] = run["train_seconds"]
    summary["epochs"] = run["epochs"]
    print(f"nnU-Net: {run['epochs']} epochs of {run['iterations_per_epoch']} iterations (batch {run['batch_size']}, "
          f"patch {run['patch_size']}) in {run['train_seconds'] / 60:.1f} min; predicted {run['cases']} cases in "
          f"{run['predict_seconds']:.1f}s", flush=True)
    return summary
