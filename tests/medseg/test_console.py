"""The console of a bundle run: compact epoch metrics, the rank rule, quiet third-party loggers."""

from __future__ import annotations

import logging

from medseg import console
from medseg.handlers.console import compact_metrics


def test_compact_metrics_drop_duplicates_and_group_classes():
    metrics = {
        "val_loss": 0.5, "val_mean_dice": 0.8, "val_dice": 0.8, "val_dice_lv": 0.9, "val_dice_rv": 0.7,
        "val_mean_iou": 0.6, "val_iou": 0.6, "val_iou_lv": 0.7, "val_iou_rv": 0.5, "not_a_number": "x",
    }
    line = compact_metrics(metrics, key_metric="val_mean_dice", new_best=True)
    assert line.startswith("val_loss 0.5000  val_mean_dice 0.8000*")
    assert " val_dice " not in f" {line} " and "val_dice_lv" not in line and "not_a_number" not in line
    assert "dice[lv 0.900 rv 0.700]" in line and "iou[lv 0.700 rv 0.500]" in line


def test_rank_rule_and_quiet_loggers(monkeypatch):
    root = logging.getLogger()
    saved = root.level, {n: logging.getLogger(n).level for n in console.QUIET_LOGGERS}
    try:
        monkeypatch.setenv("RANK", "0")
        console.configure("INFO")
        assert root.level == logging.INFO and not console.debug_enabled()
        assert logging.getLogger("ignite.engine.engine").level == logging.WARNING
        console.configure("DEBUG")
        assert console.debug_enabled() and logging.getLogger("ignite.engine.engine").level == logging.DEBUG
        monkeypatch.setenv("RANK", "1")
        console.configure("INFO")
        assert root.level == logging.WARNING and not console.interactive()
    finally:
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)
