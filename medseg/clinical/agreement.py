"""Agreement of predicted and expert cardiac indices: Bland-Altman bias and limits, Pearson correlation, MAE."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.clinical.indices import INDICES, PatientIndices, unit

__all__ = ["agreement", "bland_altman_figure"]


def agreement(predicted: Sequence[PatientIndices], expert: Sequence[PatientIndices]) -> dict[str, dict]:
    """Per index, over the patients with both a predicted and an expert value.

    Returns:
        index -> ``n``, ``unit``, ``mean_difference`` (predicted - expert, the bias), ``sd_difference``,
        ``loa_lower`` / ``loa_upper`` (bias -/+ 1.96 SD), ``pearson_r`` (None for fewer than 3 patients or a constant
        series), ``mae``, ``expert_mean``, ``predicted_mean``; ``n`` 0 and the rest None when no patient has both.
    """
    from scipy import stats

    expert_by_patient = {p.patient: p for p in expert}
    table = {}
    for index in INDICES:
        pairs = [
            (p.values[index], expert_by_patient[p.patient].values[index])
            for p in predicted
            if p.patient in expert_by_patient and index in p.values and index in expert_by_patient[p.patient].values
        ]
        row: dict[str, object] = {"n": len(pairs), "unit": unit(index)}
        if not pairs:
            row.update(dict.fromkeys(("mean_difference", "sd_difference", "loa_lower", "loa_upper", "pearson_r",
                                      "mae", "expert_mean", "predicted_mean")))
            table[index] = row
            continue
        pred, ref = np.array(pairs, dtype=np.float64).T
        diff = pred - ref
        bias = float(diff.mean())
        sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
        r = None
        if len(diff) >= 3 and np.ptp(pred) > 0 and np.ptp(ref) > 0:
            r = float(stats.pearsonr(pred, ref).statistic)
        row.update(
            mean_difference=bias,
            sd_difference=sd,
            loa_lower=bias - 1.96 * sd,
            loa_upper=bias + 1.96 * sd,
            pearson_r=r,
            mae=float(np.abs(diff).mean()),
            expert_mean=float(ref.mean()),
            predicted_mean=float(pred.mean()),
        )
        table[index] = row
    return table


def bland_altman_figure(
    predicted: Sequence[PatientIndices], expert: Sequence[PatientIndices], table: dict[str, dict], path: Path
) -> bool:
    """Bland-Altman plots (difference against mean, bias and 95% limits), one panel per index with 2+ patients.

    Returns:
        False (and writes nothing) when no index has two patients with both values.
    """
    from medseg.reports.figures import _pyplot

    expert_by_patient = {p.patient: p for p in expert}
    shown = [i for i in INDICES if table[i]["n"] >= 2]
    if not shown:
        return False
    plt = _pyplot()
    columns = min(3, len(shown))
    rows = math.ceil(len(shown) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False)
    for ax, index in zip(axes.flat, shown, strict=False):
        pairs = np.array(
            [
                (p.values[index], expert_by_patient[p.patient].values[index])
                for p in predicted
                if p.patient in expert_by_patient and index in p.values and index in expert_by_patient[p.patient].values
            ]
        )
        mean, diff = pairs.mean(axis=1), pairs[:, 0] - pairs[:, 1]
        row = table[index]
        ax.scatter(mean, diff, s=14, color="#4c72b0")
        ax.axhline(row["mean_difference"], color="#dd8452", label=f"bias {row['mean_difference']:.2f}")
        for key in ("loa_lower", "loa_upper"):
            ax.axhline(row[key], color="#999999", linestyle="--")
        ax.set_title(f"{index} ({row['unit']}, n={row['n']})", fontsize=9)
        ax.set_xlabel("mean of predicted and expert", fontsize=8)
        ax.set_ylabel("predicted - expert", fontsize=8)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle("Bland-Altman: predicted vs expert (dashed: bias ± 1.96 SD)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True
