"""resolve_amp for every setting on simulated CPUs with and without bf16, and the engines' amp arguments."""

from __future__ import annotations

import warnings

import pytest
import torch

import medseg.runtime.amp as amp_module
from medseg.bundle import BundleInputError
from medseg.runtime import AmpInferer, AmpPlan, engine_amp, engine_amp_kwargs, resolve_amp


@pytest.fixture
def cpu(monkeypatch):
    """Simulate a CPU: ``cpu(True)`` has bf16 instructions, ``cpu(False)`` has not; warnings are fresh."""
    monkeypatch.setattr(amp_module, "_warned", set())

    def simulate(has_bf16: bool) -> None:
        monkeypatch.setattr(amp_module, "cpu_supports_bf16", lambda: has_bf16)

    return simulate


@pytest.mark.parametrize(
    "setting, has_bf16, expected",
    [
        ("auto", True, "bf16"),
        ("auto", False, "off"),
        (True, True, "bf16"),
        ("true", True, "bf16"),
        (False, True, "off"),
        ("false", True, "off"),
        ("FALSE", False, "off"),
        ("bf16", True, "bf16"),
        ("bf16", False, "bf16"),  # forced: runs, slowly, with a warning
        ("fp16", True, "off"),  # fp16 is CUDA only
    ],
)
def test_cpu_settings(cpu, setting, has_bf16, expected):
    cpu(has_bf16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = resolve_amp(setting, "cpu")
    assert plan.name == expected
    assert plan.device_type == "cpu"
    assert plan.enabled == (expected != "off")
    assert plan.dtype == (torch.bfloat16 if expected == "bf16" else None)
    assert not plan.needs_grad_scaler


def test_true_without_bf16_warns_once_and_runs_fp32(cpu):
    cpu(False)
    with pytest.warns(RuntimeWarning, match="amp: true but this CPU has no bf16 instructions; running fp32"):
        plan = resolve_amp(True, "cpu")
    assert not plan.enabled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second resolve must not warn again
        assert not resolve_amp("true", torch.device("cpu")).enabled


def test_auto_without_bf16_is_silent(cpu):
    cpu(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_amp("auto", "cpu").reason == "CPU has no bf16 instructions"


@pytest.mark.parametrize("setting", ["yes", "bfloat16", 1, None, "", "fp32"])
def test_bad_value_is_one_line(cpu, setting):
    cpu(True)
    with pytest.raises(BundleInputError) as info:
        resolve_amp(setting, "cpu")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"amp: {setting!r} is not a valid setting")
    assert "auto, true, false, bf16, fp16" in message


@pytest.mark.parametrize(
    "bf16_gpu, setting, expected",
    [
        (True, "auto", "bf16"),
        (False, "auto", "fp16"),
        (True, "fp16", "fp16"),
        (False, "bf16", "fp16"),
        (True, "false", "off"),
    ],
)
def test_cuda_settings(cpu, monkeypatch, bf16_gpu, setting, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = resolve_amp(setting, "cuda:0")
    assert plan.name == expected
    # MONAI's engine amp (autocast + GradScaler) only for CUDA fp16; bf16 runs in AmpInferer without a scaler
    assert engine_amp(plan) == (expected == "fp16")
    assert engine_amp_kwargs(plan) == ({"dtype": torch.float16} if expected == "fp16" else {})


def test_cpu_bf16_plan_leaves_engine_amp_off(cpu):
    cpu(True)
    plan = resolve_amp("auto", "cpu")
    assert engine_amp(plan) is False and engine_amp_kwargs(plan) == {}


def test_cpu_flag_reader_falls_back_to_proc_cpuinfo(monkeypatch, tmp_path):
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16 amx_tile\n")
    monkeypatch.setattr(amp_module, "Path", lambda _: cpuinfo)
    assert {"avx512_bf16", "avx2"} <= amp_module._cpu_flags()
    amp_module.cpu_supports_bf16.cache_clear()
    try:
        assert amp_module.cpu_supports_bf16() is True
    finally:
        amp_module.cpu_supports_bf16.cache_clear()


def test_amp_inferer_autocasts_and_returns_fp32():
    net = torch.nn.Conv2d(1, 2, 3)
    x = torch.rand(2, 1, 8, 8)
    seen = []
    net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = AmpInferer(plan=AmpPlan(True, torch.bfloat16, "cpu", "test"))(x, net)
    assert seen == [torch.bfloat16] and out.dtype == torch.float32
    torch.testing.assert_close(out, net(x), atol=0.05, rtol=0.05)
    assert AmpInferer(plan=AmpPlan(False, None, "cpu", "off"))(x, net).dtype == torch.float32
    assert seen[-1] == torch.float32
