"""The start-up summary line and the MLflow parameters name what runs."""

from __future__ import annotations

import logging

import torch

from medseg.runtime import AmpPlan, describe_runtime, log_runtime, runtime_params


def test_summary_line_and_params(caplog):
    torch.set_num_threads(1)
    plan = AmpPlan(True, torch.bfloat16, "cpu", "CPU has bf16 instructions")
    line = describe_runtime(plan, channels_last=True, compile=False, device="cpu")
    assert line.startswith("runtime: cpu (")
    assert "amp bf16 (CPU has bf16 instructions), channels_last on, compile off, 1 threads" in line
    off = describe_runtime(AmpPlan(False, None, "cpu", "amp: false"), device=torch.device("cpu"))
    assert "amp off (amp: false), channels_last off" in off and "\n" not in off
    with caplog.at_level(logging.INFO, logger="medseg.runtime"):
        assert log_runtime(plan, True, False, "cpu") == line
    assert line in caplog.text
    params = runtime_params(plan, True, False, "cpu")
    assert params == {
        "runtime.device": "cpu",
        "runtime.amp": "bf16",
        "runtime.amp_reason": "CPU has bf16 instructions",
        "runtime.channels_last": "true",
        "runtime.compile": "false",
        "runtime.threads": "1",
    }
