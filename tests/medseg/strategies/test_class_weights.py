"""Class weights from stats.json: inverse frequency and the effective number of samples."""

from __future__ import annotations

import json

import pytest

from medseg.strategies import StrategyError
from medseg.strategies.class_weights import class_weight_tensor, class_weights, effective_number_weights


def test_effective_number_formula_and_mean_one():
    counts, beta = [1000, 10, 0], 0.99
    raw = [(1 - beta) / (1 - beta**n) for n in counts[:2]]
    raw.append(max(raw))  # an absent class gets the largest weight of the present ones
    mean = sum(raw) / 3
    assert effective_number_weights(counts, beta) == pytest.approx([w / mean for w in raw])
    assert effective_number_weights([5, 50], 0.0) == pytest.approx([1.0, 1.0])  # beta 0: equal weights


@pytest.mark.parametrize("beta", [-0.1, 1.0])
def test_effective_number_rejects_beta(beta):
    with pytest.raises(StrategyError, match="beta"):
        effective_number_weights([1, 2], beta)


def test_weights_from_stats(tmp_path):
    stats = tmp_path / "stats.json"
    stats.write_text(
        json.dumps(
            {
                "class_frequency": {
                    "training": {
                        "pixels": {"0": 900, "1": 100},
                        "fraction": {"0": 0.9, "1": 0.1},
                        "items_with_class": {"0": 4, "1": 4},
                    }
                }
            }
        )
    )
    inverse = class_weights(stats, 2, "inverse")
    assert inverse[1] / inverse[0] == pytest.approx(9.0)
    effective = class_weights(stats, 2, "effective", beta=0.999)
    assert effective == pytest.approx(effective_number_weights([900, 100], 0.999))
    assert class_weight_tensor(stats, 2, method="effective", beta=0.999).tolist() == pytest.approx(effective)


def test_bad_stats_and_method(tmp_path):
    with pytest.raises(StrategyError, match="stats.json not found"):
        class_weights(tmp_path / "stats.json", 2, "effective")
    (tmp_path / "stats.json").write_text("{}")
    with pytest.raises(StrategyError, match="class_frequency"):
        class_weights(tmp_path / "stats.json", 2, "effective")
    with pytest.raises(StrategyError, match="unknown class-weight method"):
        class_weights(tmp_path / "stats.json", 2, "sqrt")
