"""Write an evaluation report folder: ``per_case.csv``, ``summary.json``, ``report.html``, ``report.md`` and figures.

The report is written into a staging folder beside the destination and renamed into place at the end, so
a run that fails leaves either the previous report or none, never a half-written one.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from medseg.metrics.evaluation import SegmentationScores
from medseg.reports import figures

REPORT_FILES = ("per_case.csv", "summary.json", "report.html", "report.md")
# (image or None, ground truth, prediction) of one case, loaded only for the cases shown
CaseLoader = Callable[[str], tuple[np.ndarray | None, np.ndarray, np.ndarray]]


class ReportError(ValueError):
    """The report cannot be written where asked; the message names the folder and the fix."""


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, ".10g")
    return "" if value is None else str(value)


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def rank_cases(scores: SegmentationScores, n: int) -> tuple[list[int], list[int]]:
    """Indices of the ``n`` best and ``n`` worst cases by mean foreground Dice (ISIC Jaccard when undefined)."""
    columns = scores.per_case_columns()
    key = np.where(np.isnan(columns["mean_dice"]), columns["jaccard"], columns["mean_dice"])
    order = [int(i) for i in np.argsort(key, kind="stable")]
    n = min(n, len(order))
    worst = order[:n]
    best = [i for i in reversed(order) if i not in worst][:n]
    return best, worst


def _prepare_destination(out_dir: Path) -> Path:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ReportError(f"{out_dir}: exists and is not a folder; choose another --out")
        if any(out_dir.iterdir()) and not (out_dir / "summary.json").is_file():
            raise ReportError(f"{out_dir}: folder is not empty and holds no medseg report; choose another --out")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_report(
    out_dir: str | Path,
    scores: SegmentationScores,
    load_case: CaseLoader | None = None,
    case_info: Mapping[str, Mapping[str, object]] | None = None,
    n_examples: int = 3,
    title: str = "Segmentation evaluation",
    context: Mapping[str, object] | None = None,
    clinical=None,
) -> dict:
    """Write the full report for ``scores`` into ``out_dir`` (replacing a previous report there).

    Args:
        out_dir: destination folder; created, or replaced when it holds a previous report.
        scores: the scored cases.
        load_case: returns (image or None, ground truth, prediction) of a case, for the best/worst overlays;
            None skips the overlays.
        case_info: per case id, extra columns for ``per_case.csv`` (file paths, spacing).
        n_examples: number of best and of worst cases shown.
        title: the report's heading.
        context: extra facts recorded in ``summary.json`` and shown in the report (sources, options).
        clinical: a :class:`medseg.clinical.ClinicalReadout` (cardiac volumes, EF, mass and their agreement with the
            expert's): written to ``clinical.csv``, ``figures/bland_altman.png``, ``summary.json`` under
            ``"clinical"`` and the report's tables.

    Returns:
        the summary written to ``summary.json``.

    Raises:
        ReportError: ``out_dir`` is a file or a non-empty folder that is not a report.
    """
    out_dir = Path(out_dir)
    staging = _prepare_destination(out_dir)
    try:
        summary = scores.summary()
        summary["context"] = dict(context or {})
        columns = scores.per_case_columns()
        info = case_info or {}
        info_keys = sorted({k for case in info.values() for k in case})
        with open(staging / "per_case.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case_id", *info_keys, *columns])
            for i, case_id in enumerate(scores.case_ids):
                extra = [_cell(info.get(case_id, {}).get(k)) for k in info_keys]
                writer.writerow([case_id, *extra, *(_cell(float(v[i])) for v in columns.values())])

        (staging / "figures").mkdir()
        fg = scores.class_names
        table = summary["per_class"]
        figures.class_frequency_chart(
            fg,
            [max(table[n]["gt_pixel_frequency"] or 0.0, 1e-6) for n in fg],
            [max(table[n]["pred_pixel_frequency"] or 0.0, 1e-6) for n in fg],
            staging / "figures" / "class_frequency.png",
        )
        figures.score_histograms(
            {"mean_dice": columns["mean_dice"], "jaccard": columns["jaccard"], "mean_iou": columns["mean_iou"]},
            staging / "figures" / "score_histograms.png",
        )
        examples = []
        if load_case is not None and scores.case_ids:
            best, worst = rank_cases(scores, n_examples)
            for kind, indices in (("best", best), ("worst", worst)):
                for rank, i in enumerate(indices):
                    case_id = scores.case_ids[i]
                    image, gt, pred = load_case(case_id)
                    name = f"{kind}_{rank + 1}.png"
                    caption = (
                        f"{kind} {rank + 1}: {case_id} (mean Dice {_fmt(float(columns['mean_dice'][i]), 3)}, "
                        f"Jaccard {_fmt(float(columns['jaccard'][i]), 3)})"
                    )
                    figures.overlay_figure(image, gt, pred, fg, caption, staging / "figures" / name)
                    examples.append({"kind": kind, "case_id": case_id, "figure": f"figures/{name}", "caption": caption})
        summary["examples"] = examples
        if clinical is not None:
            files = clinical.write(staging)
            summary["clinical"] = {**clinical.summary(), "files": files}
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (staging / "report.md").write_text(_markdown(summary, title))
        (staging / "report.html").write_text(_html(summary, title))
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _tables(summary: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) of every table, shared by the Markdown and HTML writers."""
    unit = summary.get("distance_unit")
    metric_rows = [[k, _fmt(v), summary["definitions"].get(k, "")] for k, v in summary["metrics"].items()]
    per_class = summary["per_class"]
    metrics = [
        m for m in ("dice", "iou", "sensitivity", "specificity", "hd95", "assd") if m in next(iter(per_class.values()))
    ]
    header = ["class", "value", *[f"{m} ({unit})" if m in ("hd95", "assd") else m for m in metrics]]
    header += ["cases scored", "cases present", "GT pixel share", "pred pixel share"]
    class_rows = []
    for name, row in list(per_class.items())[1:]:
        cells = [name, str(row["value"])]
        cells += [f"{_fmt(row[m], 3)} ± {_fmt(row[m + '_std'], 3)}" for m in metrics]
        cells += [str(row["n_cases_scored"]), str(row["n_cases_present"])]
        cells += [_fmt(row["gt_pixel_frequency"]), _fmt(row["pred_pixel_frequency"])]
        class_rows.append(cells)
    tables = [
        ("Scores over the set", ["metric", "value", "definition"], metric_rows),
        ("Per class (mean ± std over the cases that score the class)", header, class_rows),
    ]
    if summary["merged_classes"]:
        rows = [
            [n, ", ".join(str(v) for v in g["values"]), _fmt(g["iou"])] for n, g in summary["merged_classes"].items()
        ]
        tables.append(("Merged classes", ["group", "label values", "IoU"], rows))
    if summary.get("clinical"):
        tables += _clinical_tables(summary["clinical"])
    if summary["context"]:
        tables.append(("Run", ["item", "value"], [[str(k), str(v)] for k, v in summary["context"].items()]))
    return tables


def _clinical_tables(clinical: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """Agreement per index (when there is expert data) and the indices per patient, with what was left out."""
    from medseg.clinical import INDICES, unit

    tables = []
    if clinical["agreement"]:
        header = ["index", "patients", "expert mean", "predicted mean", "bias (pred - expert)", "95% limits",
                  "Pearson r", "MAE"]
        rows = []
        for index, row in clinical["agreement"].items():
            limits = "–" if row["loa_lower"] is None else f"{row['loa_lower']:.2f} to {row['loa_upper']:.2f}"
            rows.append([f"{index} ({row['unit']})", str(row["n"]), _fmt(row["expert_mean"], 2),
                         _fmt(row["predicted_mean"], 2), _fmt(row["mean_difference"], 2), limits,
                         _fmt(row["pearson_r"], 3), _fmt(row["mae"], 2)])
        tables.append(("Clinical indices: agreement with the expert", header, rows))
    header = ["patient", "source", *[f"{i} ({unit(i)})" for i in INDICES], "left out because"]
    rows = []
    for patient, entry in clinical["patients"].items():
        for source in ("predicted", "expert"):
            if source in entry:
                values = [_fmt(entry[source].get(i), 1) for i in INDICES]
                rows.append([patient, source, *values, "; ".join(entry[f"{source}_notes"])])
    tables.append(("Clinical indices per patient", header, rows))
    return tables


def _status_line(summary: dict) -> str:
    if summary["complete"]:
        return f"{summary['n_cases']} cases scored; every case had a prediction."
    missing = summary["missing_cases"]
    return (
        f"INCOMPLETE: {summary['n_cases']} cases scored, {len(missing)} without prediction "
        f"(--allow-missing): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
    )


def _markdown(summary: dict, title: str) -> str:
    lines = [f"# {title}", "", _status_line(summary), ""]
    for heading, header, rows in _tables(summary):
        lines += [f"## {heading}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
        lines.append("")
    lines += ["## Figures", "", "![class pixel frequencies](figures/class_frequency.png)", ""]
    lines += ["![per-case score histograms](figures/score_histograms.png)", ""]
    if "figures/bland_altman.png" in summary.get("clinical", {}).get("files", []):
        lines += ["![Bland-Altman plots of the clinical indices](figures/bland_altman.png)", ""]
    if summary["examples"]:
        lines += ["## Best and worst cases", ""]
        for example in summary["examples"]:
            lines += [f"![{example['caption']}]({example['figure']})", "", example["caption"], ""]
    return "\n".join(lines)


def _html(summary: dict, title: str) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#eee}"
        "img{max-width:100%}.incomplete{color:#b00;font-weight:bold}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="{"complete" if summary["complete"] else "incomplete"}">{esc(_status_line(summary))}</p>',
    ]
    for heading, header, rows in _tables(summary):
        parts.append(f"<h2>{esc(heading)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts += [
        "<h2>Figures</h2>",
        '<img src="figures/class_frequency.png" alt="class pixel frequencies">',
        '<img src="figures/score_histograms.png" alt="per-case score histograms">',
    ]
    if "figures/bland_altman.png" in summary.get("clinical", {}).get("files", []):
        parts.append('<img src="figures/bland_altman.png" alt="Bland-Altman plots of the clinical indices">')
    if summary["examples"]:
        parts.append("<h2>Best and worst cases</h2>")
        for example in summary["examples"]:
            parts.append(
                f'<figure><img src="{esc(example["figure"])}" alt="{esc(example["caption"])}">'
                f"<figcaption>{esc(example['caption'])}</figcaption></figure>"
            )
    parts.append("</body></html>\n")
    return "\n".join(parts)
