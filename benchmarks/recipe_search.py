"""Cross-validated comparison of training recipes on the real samples (issue 10), in a plain PyTorch loop.

Each recipe is a set of plain MONAI components (network, transforms, loss, optimiser, schedule); every
fold's model is trained for a fixed number of iterations (the budget is counted in iterations so that
recipes compare fairly on a shared machine; seconds per iteration are recorded), then its held-out fold is
predicted with and without flip/rot90 test-time augmentation (``medseg.inference.FlipTTAInferer``). The
post-processing (``medseg.postprocessing``) is chosen as nnU-Net does, on out-of-fold predictions, but
honestly: fold k is post-processed with the decision chosen on the other folds' predictions.

The pool is every item of the datalist (training + validation + testing) with a ``fold`` >= 0, so convert
the samples with no validation or testing share::

    python -m data_prep cardiac-png --src ../shared/data/cardiac_png_sample --out /tmp/recipe/cardiac \\
        --folds 5 --val-ratio 0 --test-ratio 0
    python -m data_prep isic --src ../shared/data/isic2017_sample --out /tmp/recipe/isic --max-size 256 \\
        --folds 3 --val-ratio 0 --test-ratio 0
    python benchmarks/recipe_search.py --task cardiac --data /tmp/recipe/cardiac --recipes old nnunet \\
        --iterations 600 --json cardiac.json

Scores are on the converted images' own grid (cardiac 96 x 96; ISIC long side 256): predictions made at the
recipe's input size are resized back (probabilities, bilinear) before the argmax.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medseg.inference import FlipTTAInferer  # noqa: E402
from medseg.metrics import dice_per_class, iou_per_class, isic_jaccard, nanmean, threshold_jaccard  # noqa: E402
from medseg.metrics.distance import surface_distances_per_class  # noqa: E402
from medseg.postprocessing import apply_postprocessing, choose_postprocessing  # noqa: E402

TASKS = {
    "cardiac": {"num_classes": 4, "in_channels": 1, "names": ["RV", "myo", "LV"]},
    "isic": {"num_classes": 2, "in_channels": 3, "names": ["lesion"]},
}


# ---- data ---------------------------------------------------------------------------------------------------


def load_pool(data_dir: Path, in_channels: int) -> list[dict]:
    """Every labelled datalist item with a fold, decoded once: image float32 (C, H, W), label uint8 (H, W)."""
    from PIL import Image

    datalist = json.loads((data_dir / "datalist.json").read_text())
    pool = []
    for split in ("training", "validation", "testing"):
        for item in datalist.get(split, []):
            if item.get("fold", -1) < 0 or "label" not in item:
                continue
            image = np.asarray(Image.open(data_dir / item["image"]).convert("L" if in_channels == 1 else "RGB"))
            image = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
            label = np.asarray(Image.open(data_dir / item["label"]))
            label = (label > 0).astype(np.uint8) if in_channels == 3 else label.astype(np.uint8)
            pool.append({"case_id": item["case_id"], "fold": item["fold"], "image": image.astype(np.float32),
                         "label": label})
    return pool


def normalise(image: np.ndarray, mode: str) -> np.ndarray:
    if mode == "scale01":  # ScaleIntensity(0, 1) per image (cardiac_unet)
        lo, hi = image.min(), image.max()
        return (image - lo) / max(hi - lo, 1e-8)
    if mode == "imagenet":  # /255 then ImageNet mean/std (isic_flexunet_resnet34)
        mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
        std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
        return (image / 255.0 - mean) / std
    if mode == "zscore":  # NormalizeIntensity per image and channel (nnU-Net's non-CT scheme)
        mean = image.mean(axis=(1, 2), keepdims=True)
        std = image.std(axis=(1, 2), keepdims=True)
        return (image - mean) / np.maximum(std, 1e-8)
    raise ValueError(mode)


def resize(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(image))[None].float()
    if mode == "nearest":
        return F.interpolate(t, size=(size, size), mode="nearest")[0].numpy()
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].numpy()


# ---- recipes ------------------------------------------------------------------------------------------------


@dataclass
class Recipe:
    name: str
    network: dict
    norm: str
    size: int
    batch: int
    loss: str
    optimiser: str
    lr: float
    schedule: str
    aug: str
    deep_supervision: bool = False
    weight_decay: float = 0.0
    notes: str = ""
    extra: dict = field(default_factory=dict)


def recipes(task: str) -> dict[str, Recipe]:
    unet16 = {"_target_": "UNet", "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2,
              "norm": "batch"}
    dyn32 = {"_target_": "DynUNet", "filters": [32, 64, 128, 256, 512], "strides": [1, 2, 2, 2, 2],
             "kernel_size": [3] * 5, "norm_name": "instance", "deep_supervision": True, "deep_supr_num": 2,
             "res_block": False}
    if task == "cardiac":
        old = Recipe("old", unet16, "scale01", 96, 16, "dicefocal", "adam", 1e-3, "cosine", "old",
                     weight_decay=1e-4, notes="cardiac_unet train.json")
        new = Recipe("nnunet", dyn32, "zscore", 96, 16, "dicece_batch", "sgd", 1e-2, "poly", "heavy",
                     deep_supervision=True, weight_decay=3e-5, notes="nnU-Net-like")
        return {
            "old": old,
            "nnunet": new,
            # ablations: one component of the nnU-Net-like recipe swapped back
            "nnunet_oldaug": Recipe(**{**new.__dict__, "name": "nnunet_oldaug", "aug": "old"}),
            "nnunet_adam": Recipe(**{**new.__dict__, "name": "nnunet_adam", "optimiser": "adamw", "lr": 1e-3,
                                     "schedule": "cosine", "weight_decay": 1e-4}),
            "old_heavy": Recipe(**{**old.__dict__, "name": "old_heavy", "norm": "zscore", "aug": "heavy",
                                   "loss": "dicece_batch", "optimiser": "sgd", "lr": 1e-2, "schedule": "poly",
                                   "weight_decay": 3e-5}),
        }
    flex = {"_target_": "FlexibleUNet", "backbone": "tv_resnet34", "pretrained": False, "is_pad": False}
    old = Recipe("old", flex, "imagenet", 224, 8, "dicefocal", "adam", 1e-4, "cosine", "old_isic",
                 notes="isic_flexunet_resnet34 train.json (whole image resized, no crop)")
    new = Recipe("scratch", flex, "zscore", 192, 8, "dicece_batch", "adamw", 1e-3, "cosine", "heavy_isic",
                 weight_decay=1e-4)
    return {
        "old": old,
        "scratch": new,
        "scratch_sgd": Recipe(**{**new.__dict__, "name": "scratch_sgd", "optimiser": "sgd", "lr": 1e-2,
                                 "schedule": "poly", "weight_decay": 3e-5}),
        "scratch_unet": Recipe(**{**new.__dict__, "name": "scratch_unet", "network": dyn32 | {"deep_supervision": True},
                                  "deep_supervision": True}),
        "scratch_oldaug": Recipe(**{**new.__dict__, "name": "scratch_oldaug", "aug": "old_isic"}),
    }


def build_network(recipe: Recipe, in_channels: int, num_classes: int) -> torch.nn.Module:
    from monai.networks import nets

    import medseg.networks  # noqa: F401  (registers tv_resnet34 for FlexibleUNet)

    kwargs = dict(recipe.network)
    target = kwargs.pop("_target_")
    if target == "DynUNet":
        kwargs["upsample_kernel_size"] = kwargs["strides"][1:]
    return getattr(nets, target)(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, **kwargs)


def build_augmentation(name: str, size: int):
    """MONAI dictionary transforms on {'image': (C,H,W) float, 'label': (1,H,W)} at the recipe's size."""
    from monai import transforms as T

    keys, modes = ["image", "label"], ["bilinear", "nearest"]
    flips = [T.RandFlipd(keys, prob=0.5, spatial_axis=0), T.RandFlipd(keys, prob=0.5, spatial_axis=1)]
    if name == "old":  # cardiac_unet
        return T.Compose(flips + [T.RandRotated(keys, range_x=0.1745, prob=0.5, mode=modes, padding_mode="zeros")])
    if name == "old_isic":  # isic_flexunet_resnet34 (minus the random crop: images are resized to the input)
        return T.Compose(flips + [
            T.RandRotated(keys, range_x=0.2618, prob=0.5, mode=modes, padding_mode="reflection"),
            T.RandZoomd(keys, prob=0.3, min_zoom=0.9, max_zoom=1.1, mode=modes, padding_mode="reflect"),
        ])
    if name == "heavy":  # nnU-Net's 2D augmentation, cardiac limits (rotation +-30 deg; MR intensity)
        return T.Compose([
            T.RandAffined(keys, prob=0.3, rotate_range=math.radians(30), scale_range=(0.3, 0.3), mode=modes,
                          padding_mode="zeros", spatial_size=(size, size)),
            T.Rand2DElasticd(keys, spacing=(24, 24), magnitude_range=(1, 3), prob=0.1, mode=modes,
                             padding_mode="zeros", spatial_size=(size, size)),
            T.RandGaussianNoised("image", prob=0.1, std=0.1),
            T.RandGaussianSmoothd("image", prob=0.1, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0)),
            T.RandScaleIntensityd("image", factors=0.25, prob=0.15),
            T.RandShiftIntensityd("image", offsets=0.1, prob=0.15),
            T.RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.3, retain_stats=True),
            *flips,
        ])
    if name == "heavy_isic":  # dermoscopy: any orientation, strong colour changes, mild scale
        return T.Compose([
            T.RandRotate90d(keys, prob=0.5, max_k=3),
            T.RandAffined(keys, prob=0.5, rotate_range=math.pi, scale_range=(0.25, 0.25), mode=modes,
                          padding_mode="reflection", spatial_size=(size, size)),
            T.Rand2DElasticd(keys, spacing=(48, 48), magnitude_range=(1, 3), prob=0.1, mode=modes,
                             padding_mode="reflection", spatial_size=(size, size)),
            T.RandGaussianNoised("image", prob=0.1, std=0.1),
            T.RandGaussianSmoothd("image", prob=0.1, sigma_x=(0.5, 1.5), sigma_y=(0.5, 1.5)),
            T.RandScaleIntensityd("image", factors=0.3, prob=0.3, channel_wise=True),
            T.RandShiftIntensityd("image", offsets=0.2, prob=0.3, channel_wise=True),
            T.RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.3, retain_stats=True),
            *flips,
        ])
    raise ValueError(name)


def build_loss(recipe: Recipe):
    from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceFocalLoss

    if recipe.loss == "dicefocal":
        loss = DiceFocalLoss(include_background=True, to_onehot_y=True, softmax=True)
    else:  # nnU-Net: Dice over the whole batch (foreground only) + cross-entropy
        loss = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True, smooth_nr=1e-5,
                          smooth_dr=1e-5)
    return DeepSupervisionLoss(loss, weight_mode="exp") if recipe.deep_supervision else loss


def build_optimiser(recipe: Recipe, params, iterations: int):
    if recipe.optimiser == "sgd":
        opt = torch.optim.SGD(params, lr=recipe.lr, momentum=0.99, nesterov=True, weight_decay=recipe.weight_decay)
    elif recipe.optimiser == "adamw":
        opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.schedule == "poly":  # nnU-Net: lr * (1 - it / max_it) ** 0.9, stepped every iteration
        sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=iterations, power=0.9)
    else:  # cosine over the whole budget, stepped every iteration
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iterations)
    return opt, sched


# ---- train / predict / score ----------------------------------------------------------------------------------


def prepare(case: dict, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    image = resize(normalise(case["image"], recipe.norm), recipe.size, "bilinear")
    label = resize(case["label"][None].astype(np.float32), recipe.size, "nearest")
    return image.astype(np.float32), label.astype(np.float32)


def train_fold(recipe: Recipe, train_cases, task: dict, iterations: int, seed: int, bf16: bool, log) -> tuple:
    from monai.utils import set_determinism

    set_determinism(seed)
    data = [prepare(c, recipe) for c in train_cases]
    aug = build_augmentation(recipe.aug, recipe.size)
    aug.set_random_state(seed)
    net = build_network(recipe, task["in_channels"], task["num_classes"])
    net = net.to(memory_format=torch.channels_last)
    loss_fn = build_loss(recipe)
    opt, sched = build_optimiser(recipe, net.parameters(), iterations)
    rng = np.random.default_rng(seed)
    net.train()
    t0, aug_time, it = time.perf_counter(), 0.0, 0
    order: list[int] = []
    while it < iterations:
        if len(order) < recipe.batch:
            order += list(rng.permutation(len(data)))
        batch_idx, order = order[: recipe.batch], order[recipe.batch:]
        ta = time.perf_counter()
        samples = [aug({"image": data[i][0], "label": data[i][1]}) for i in batch_idx]
        x = torch.stack([torch.as_tensor(s["image"]).float() for s in samples]).contiguous(
            memory_format=torch.channels_last)
        y = torch.stack([torch.as_tensor(s["label"]).float() for s in samples])
        aug_time += time.perf_counter() - ta
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        if recipe.deep_supervision:
            out = list(torch.unbind(out, dim=1))
        loss = loss_fn(out if isinstance(out, list) else out.float(), y)
        loss.backward()
        opt.step()
        sched.step()
        it += 1
        if it % 50 == 0 or it == iterations:
            log(f"    it {it}/{iterations} loss {loss.item():.4f} {(time.perf_counter() - t0) / it:.3f} s/it")
    seconds = time.perf_counter() - t0
    return net, {"train_s": seconds, "s_per_it": seconds / iterations, "aug_s_per_it": aug_time / iterations}


@torch.no_grad()
def predict(net, cases, recipe: Recipe, task: dict, tta: FlipTTAInferer, bf16: bool) -> tuple[list, float]:
    net.eval()
    preds, t0 = [], time.perf_counter()
    for case in cases:
        image, _ = prepare(case, recipe)
        x = torch.from_numpy(image)[None].contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            probs = tta(x, net).float()
        h, w = case["label"].shape
        if probs.shape[-2:] != (h, w):
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
        preds.append(probs[0].argmax(0).numpy().astype(np.uint8))
    return preds, (time.perf_counter() - t0) / len(cases)


def score(preds, gts, num_classes: int, hd: bool) -> dict:
    dice = np.stack([dice_per_class(p, g, num_classes) for p, g in zip(preds, gts, strict=True)])[:, 1:]
    iou = np.stack([iou_per_class(p, g, num_classes) for p, g in zip(preds, gts, strict=True)])[:, 1:]
    out = {"dice": nanmean(dice, axis=0).tolist(), "iou": nanmean(iou, axis=0).tolist()}
    out["mean_dice"] = float(np.mean(out["dice"]))
    if hd:
        hd95 = np.stack([surface_distances_per_class(p, g, num_classes)[0] for p, g in zip(preds, gts, strict=True)])
        out["hd95"] = nanmean(hd95[:, 1:], axis=0).tolist()
    jac = [isic_jaccard(p, g) for p, g in zip(preds, gts, strict=True)]
    out["jaccard"] = float(np.mean(jac))
    out["thresholded_jaccard"] = float(np.mean([threshold_jaccard(j) for j in jac]))
    return out


def run_recipe(recipe: Recipe, pool, task_name: str, args, log) -> dict:
    task = TASKS[task_name]
    folds = sorted({c["fold"] for c in pool}) if args.folds is None else args.folds
    variants = {"plain": FlipTTAInferer(flips=False, rot90=False),
                "tta": FlipTTAInferer(flips=True, rot90=task_name == "isic")}
    oof = {v: {} for v in variants}  # variant -> fold -> list of predictions
    gts, fold_info = {}, {}
    for fold in folds:
        train = [c for c in pool if c["fold"] != fold]
        val = [c for c in pool if c["fold"] == fold]
        log(f"  {recipe.name} fold {fold}: {len(train)} train, {len(val)} val")
        net, info = train_fold(recipe, train, task, args.iterations, args.seed + fold, args.bf16, log)
        for v, inferer in variants.items():
            oof[v][fold], info[f"predict_s_per_image_{v}"] = predict(net, val, recipe, task, inferer, args.bf16)
        gts[fold] = [c["label"] for c in val]
        fold_info[fold] = info
    metrics = ["dice"] + (["thresholded_jaccard"] if task_name == "isic" else [])
    result = {"recipe": recipe.__dict__, "iterations": args.iterations, "folds": {}, "decisions": {}}
    for fold in folds:
        entry = dict(fold_info[fold])
        for v in variants:
            entry[v] = score(oof[v][fold], gts[fold], task["num_classes"], args.hd95)
            if len(folds) > 1:  # decision from the other folds' predictions only
                others = [f for f in folds if f != fold]
                decision = choose_postprocessing([p for f in others for p in oof[v][f]],
                                                 [g for f in others for g in gts[f]], task["num_classes"], metrics)
                post = [apply_postprocessing(p, decision) for p in oof[v][fold]]
                entry[v + "+pp"] = score(post, gts[fold], task["num_classes"], args.hd95)
                entry[v + "+pp_decision"] = decision["classes"]
        result["folds"][str(fold)] = entry
        log(f"  {recipe.name} fold {fold}: " + ", ".join(
            f"{k} {entry[k]['mean_dice']:.4f}/{entry[k]['thresholded_jaccard']:.4f}" for k in entry
            if isinstance(entry[k], dict) and "mean_dice" in entry[k]) + f"; {entry['s_per_it']:.3f} s/it")
    for v in variants:  # the decision a shipped model would carry: chosen on all out-of-fold predictions
        result["decisions"][v] = choose_postprocessing([p for f in folds for p in oof[v][f]],
                                                       [g for f in folds for g in gts[f]], task["num_classes"], metrics)
    return result


def summarise(results: list[dict], task_name: str) -> str:
    names = TASKS[task_name]["names"]
    lines = ["| recipe | variant | mean fg Dice | " + " | ".join(f"Dice {n}" for n in names) + " | "
             + " | ".join(f"IoU {n}" for n in names) + " | HD95 (px) | thr. Jaccard | s/it |",
             "|---|---|---|" + "---|" * (2 * len(names)) + "---|---|---|"]

    def ms(values):
        values = np.asarray(values, dtype=float)
        return f"{np.nanmean(values):.3f} ± {np.nanstd(values, ddof=1) if len(values) > 1 else 0:.3f}"

    for res in results:
        folds = list(res["folds"].values())
        for v in [k for k in folds[0] if isinstance(folds[0][k], dict) and "mean_dice" in folds[0][k]]:
            row = [res["recipe"]["name"], v, ms([f[v]["mean_dice"] for f in folds])]
            row += [ms([f[v]["dice"][i] for f in folds]) for i in range(len(names))]
            row += [ms([f[v]["iou"][i] for f in folds]) for i in range(len(names))]
            row.append(ms([np.nanmean(f[v]["hd95"]) for f in folds]) if "hd95" in folds[0][v] else "")
            isic = task_name == "isic"  # for cardiac the binary (whole-heart) Jaccard is not a target: left out
            row.append(ms([f[v]["thresholded_jaccard"] for f in folds]) if isic else "")
            row.append(f"{np.mean([f['s_per_it'] for f in folds]):.3f}")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--data", type=Path, required=True, help="a data_prep output folder (datalist.json)")
    parser.add_argument("--recipes", nargs="+", default=None, help="recipe names (default: all)")
    parser.add_argument("--iterations", type=int, default=600, help="training iterations per fold")
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="folds to run (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on CPU")
    parser.add_argument("--hd95", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--override", default="{}", help="JSON dict of Recipe fields applied to every recipe")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    available = recipes(args.task)
    names = args.recipes or list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {sorted(available)}")
    if not (args.data / "datalist.json").is_file():
        parser.error(f"--data {args.data}: no datalist.json; convert the sample with python -m data_prep first")
    pool = load_pool(args.data, TASKS[args.task]["in_channels"])

    def log(msg):
        print(msg, flush=True)

    log(f"{args.task}: {len(pool)} cases in folds {sorted({c['fold'] for c in pool})}; {args.iterations} it/fold; "
        f"threads {args.threads}; bf16 {args.bf16}")
    results = []
    for name in names:
        recipe = Recipe(**{**available[name].__dict__, **json.loads(args.override)})
        t0 = time.perf_counter()
        results.append(run_recipe(recipe, pool, args.task, args, log))
        results[-1]["wall_s"] = time.perf_counter() - t0
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=float))
        log(summarise(results[-1:], args.task))
    log(summarise(results, args.task))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
