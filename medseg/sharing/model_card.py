"""The model card (``docs/README.md``) of a packaged bundle, written from its metadata and its MLflow run.

Every number in it comes from the run; where there is no run (a bare checkpoint) or the run did not record
something, the card says so instead of inventing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.sharing.run_info import RunInfo

NOT_FOR_CLINICAL_USE = "**Research use only. Not for clinical use**: not a medical device, not validated clinically."
# metric-name prefixes -> the split they describe (MLflow runs log validation metrics per epoch, tests at the end)
SPLIT_PREFIXES = {"testing": ("test_", "test/", "testing_"), "validation": ("best_", "val_", "val/", "validation_")}
DATA_PARAM_HINTS = ("data", "dataset", "datalist", "n_train", "n_val", "n_test", "fold", "split", "source")


def split_metrics(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """Group a run's metrics by the split they were measured on (``validation``, ``testing``), by name prefix."""
    grouped: dict[str, dict[str, float]] = {"validation": {}, "testing": {}}
    for name, value in sorted(metrics.items()):
        for split, prefixes in SPLIT_PREFIXES.items():
            if name.startswith(prefixes) and not name.endswith(("_epoch", "loss")):
                grouped[split][name] = value
                break
    return grouped


def cross_validation(fold_scores: dict[str, float]) -> dict:
    """Per-fold validation scores with their mean and spread (sample standard deviation, min, max)."""
    import statistics

    values = list(fold_scores.values())
    return {
        "metric": "validation mean Dice (background excluded), each fold on its held-out fold",
        "folds": {k: round(v, 4) for k, v in sorted(fold_scores.items())},
        "n_folds": len(values),
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def learning_curve(history: dict[str, list[tuple[int, float]]], path: Path) -> Path | None:
    """Plot every per-epoch metric of the run (losses on the left, scores on the right); None when there is none."""
    curves = {k: v for k, v in history.items() if len(v) > 1}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in sorted(curves.items()):
        ax = ax_loss if "loss" in name else ax_score
        ax.plot([s for s, _ in points], [v for _, v in points], label=name)
    for ax, title in ((ax_loss, "losses"), (ax_score, "metrics")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render(
    metadata: dict,
    run: RunInfo,
    bundle_name: str,
    curve: str | None = None,
    overlays: list[str] | None = None,
    seed_paper_scores: dict[str, dict[str, float]] | None = None,
    data_license: str | None = None,
    postprocessing: dict | None = None,
    postprocessing_origin: str = "",
) -> str:
    """Write the model card.

    Args:
        metadata: the packaged ``metadata.json``.
        run: the run (or bare checkpoint) the weights come from.
        bundle_name: the package's folder name.
        curve: the learning-curve image, relative to ``docs/``.
        overlays: example overlay images, relative to ``docs/``.
        seed_paper_scores: published scores to compare with (``{paper: {metric: value}}``), when known.
        data_license: the text of the training data's licence (``docs/data_license.txt``).
        postprocessing: the shipped post-processing decision (``{"classes": ...}``), or None.
        postprocessing_origin: where that decision came from, for people (``chosen on ...``).

    Returns:
        the Markdown text.
    """
    fmt = metadata.get("network_data_format", {})
    image = fmt.get("inputs", {}).get("image", {})
    pred = fmt.get("outputs", {}).get("pred", {})
    classes = pred.get("channel_def", {})
    version = metadata.get("version", "?")
    lines = [f"# {metadata.get('name', bundle_name)} (version {version})", "", NOT_FOR_CLINICAL_USE, ""]
    lines += ["## Intended use", "", metadata.get("intended_use", "Research only; not for clinical use."), ""]
    lines += ["## What it segments", "", metadata.get("description", "(no description in the metadata)"), ""]
    lines += [
        f"- task: {metadata.get('task', 'not stated')}",
        f"- classes: {', '.join(f'{k} = {v}' for k, v in classes.items()) or 'not stated'}",
        f"- input: {image.get('num_channels', '?')} channel(s) ({image.get('format', '?')}), resized to "
        f"{image.get('spatial_shape', '?')} inside the bundle, "
        f"intensities scaled to {image.get('value_range', '?')}",
        f"- intended use: {metadata.get('intended_use', 'research only')}",
        "",
    ]

    lines += ["## Training and validation data", ""]
    lines.append(f"- source: {metadata.get('data_source', 'not stated')}")
    lines.append(f"- data licence: see `data_license.txt` ({metadata.get('data_license', 'as stated by the source')})")
    training = metadata.get("training_data", {})
    for key, value in training.items():
        lines.append(f"- {key}: {value}")
    for dataset in run.datasets:
        lines.append(
            f"- dataset input of the run: {dataset.get('name') or '?'} (digest {dataset.get('digest') or '?'}, "
            f"{dataset.get('source_type') or 'source'} {dataset.get('source') or '?'})"
        )
    for tag in ("medseg.datalist", "medseg.datalist_sha256"):
        if run.tags.get(tag):
            lines.append(f"- {tag.split('.', 1)[1]}: `{run.tags[tag]}`")
    if not run.has_run and not run.folds:
        lines.append("- counts: not available (packaged from a checkpoint without its MLflow run)")
    lines.append("")
    lines += ["## Data licence", ""]
    lines += [(data_license or "Not stated; check the source's terms before any use beyond research.").strip(), ""]

    lines += ["## Performance", ""]
    performance = metadata.get("performance") if isinstance(metadata.get("performance"), dict) else {}
    cv = performance.get("cross_validation")
    if cv:
        lines += [
            f"Cross-validated ({cv['n_folds']} folds; {cv['metric']}): **{cv['mean']:.4f} ± {cv['std']:.4f}** "
            f"(mean ± sample standard deviation; min {cv['min']:.4f}, max {cv['max']:.4f}).",
            "",
        ]
        lines += _table([(k, _fmt(v)) for k, v in cv["folds"].items()], ("fold", "validation score")) + [""]
        if run.is_ensemble:
            lines += [f"`medseg predict` averages the softmax of the {len(run.folds)} fold models (ensemble).", ""]
    if not run.has_run and not cv:
        lines += [
            f"No MLflow run was given (weights from `{run.checkpoint.name}`), so no metrics are reported here. "
            "Measure the model on your own labelled images before relying on it.",
            "",
        ]
    else:
        grouped = split_metrics(run.metrics)
        rows = [(split, name, _fmt(value)) for split, values in grouped.items() for name, value in values.items()]
        lines += (
            _table(rows, ("split", "metric", "value")) if rows else ["The run recorded no validation or test metrics."]
        )
        if not grouped["testing"]:
            lines += ["", "No test-split metrics were recorded in this run; evaluate with `medseg evaluate`."]
        lines.append("")
    if seed_paper_scores:
        lines += ["Published scores of the reference papers, for comparison (other data and protocols):", ""]
        rows = [(paper, m, _fmt(v)) for paper, scores in seed_paper_scores.items() for m, v in scores.items()]
        lines += _table(rows, ("paper", "metric", "value")) + [""]

    lines += ["## Post-processing", ""]
    if postprocessing:
        from medseg.postprocessing import describe_decision

        origin = f" ({postprocessing_origin})" if postprocessing_origin else ""
        lines += [f"Applied to every label map: {describe_decision(postprocessing)}{origin}.", ""]
    else:
        lines += ["None: the label maps are the network's argmax.", ""]

    lines += ["## Learning curves", ""]
    lines += [f"![learning curves]({curve})", ""] if curve else ["Not available (no per-epoch metrics in the run).", ""]
    lines += ["## Example overlays", ""]
    if overlays:
        lines += [f"![example {i + 1}]({path})" for i, path in enumerate(overlays)] + [""]
    else:
        lines += ["None recorded in the run.", ""]

    lines += [
        "## Known failure cases and limitations",
        "",
        "- " + NOT_FOR_CLINICAL_USE,
        "- A 2D model: volumes are segmented slice by slice, without 3D context.",
        "- Trained only on the data above; other scanners, protocols, skin types or populations may fail.",
        "- Failure cases were not catalogued for this run; check overlays (`medseg predict --overlay`) on your "
        "data and score it against your own labels with `medseg evaluate`.",
        f"- Every image is resized to {image.get('spatial_shape', '?')} before segmentation: structures smaller "
        "than a few pixels at that size are missed or merged.",
    ]
    known = metadata.get("known_limitations", [])
    lines += [f"- {item}" for item in (known if isinstance(known, list) else [known])] + [""]

    lines += [
        "## How to run it",
        "",
        "```bash",
        f"medseg check-bundle {bundle_name}.zip --trusted_keys KEYS   # manifest, hashes, signature; exit 1 if bad",
        f"medseg predict --bundle {bundle_name}.zip --input IMAGES --output RESULTS --overlay \\",
        "    --require_signed --trusted_keys KEYS",
        "```",
        "",
        "`medseg predict` builds the model from `manifest.json` (data only: registered names, typed parameters, "
        "safetensors weights); it never runs the MONAI configs. Only if you trust the sender, the MONAI bundle "
        f"also runs as `python -m monai.bundle run --config_file {bundle_name}/configs/inference.json "
        f"--bundle_root {bundle_name} --dataset_dir IMAGES --output_dir RESULTS` (its configs are Python).",
        "",
        "`medseg predict` writes masks in each input's format (PNG at the original size; NIfTI with the input's "
        "affine; for a DICOM series also a DICOM Segmentation), `findings.csv` (areas per structure, in mm^2 and "
        "mL when the spacing is known) and overlays.",
        "",
    ]

    lines += ["## Provenance", ""]
    if run.has_run:
        lines += [f"- MLflow run `{run.run_id}` ({run.run_name}) in `{run.tracking_uri}`"]
        lines += [f"- {k}: {v}" for k, v in sorted(run.tags.items()) if k.startswith("medseg.")]
        params = {k: v for k, v in run.params.items() if any(h in k.lower() for h in DATA_PARAM_HINTS)}
        lines += [f"- param {k}: {v}" for k, v in sorted(params.items())]
    else:
        lines.append(f"- weights: checkpoint `{run.checkpoint.name}` (no MLflow run)")
    for file, digest in metadata.get("model_sha256", {}).items():
        lines.append(f"- `{file}` sha256 `{digest}`")
    lines += ["", "## Changelog", ""] + [f"- {v}: {text}" for v, text in metadata.get("changelog", {}).items()]
    return "\n".join(lines) + "\n"
