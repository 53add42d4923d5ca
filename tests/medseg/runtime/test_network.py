"""prepare_network: channels_last keeps outputs, the auto rule, compile with its eager fallback, prepare_batch."""

from __future__ import annotations

import warnings

import pytest
import torch
from monai.data import MetaTensor
from monai.networks.nets import FlexibleUNet, UNet

import medseg.runtime.network as network_module
from medseg.bundle import BundleInputError
from medseg.runtime import (
    AmpInferer,
    AmpPlan,
    ChannelsLastPrepareBatch,
    is_compiled,
    prepare_network,
    resolve_channels_last,
    uncompile_network,
)

BF16 = AmpPlan(True, torch.bfloat16, "cpu", "test")
FP32 = AmpPlan(False, None, "cpu", "test")


def small_unet(in_channels: int = 1) -> UNet:
    torch.manual_seed(0)
    return UNet(2, in_channels, 3, (4, 8, 16), (2, 2), num_res_units=1, norm="batch").eval()


@pytest.mark.parametrize("plan, tolerance", [(FP32, 1e-5), (BF16, 0.1)])
def test_channels_last_keeps_outputs(plan, tolerance):
    x = torch.rand(2, 2, 32, 32)  # 2 channels: with 1, NCHW and NHWC strides coincide
    reference_net = small_unet(2)
    with torch.no_grad():
        reference = AmpInferer(plan=plan)(x, reference_net)
        net = prepare_network(small_unet(2), "cpu", channels_last=True, amp_plan=plan)
        assert net.model[0].conv.unit0.conv.weight.is_contiguous(memory_format=torch.channels_last)
        images, _ = ChannelsLastPrepareBatch()({"image": x, "label": torch.zeros(2, 1, 32, 32)}, "cpu")
        assert images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
        out = AmpInferer(plan=plan)(images, net)
    torch.testing.assert_close(out.contiguous(), reference, atol=tolerance, rtol=tolerance)
    # checkpoints stay loadable either way
    assert set(net.state_dict()) == set(reference_net.state_dict())


@pytest.mark.parametrize("avx512", [True, False])
def test_auto_rule(monkeypatch, avx512):
    monkeypatch.setattr(network_module, "cpu_has_avx512", lambda: avx512)
    unet = small_unet()
    flex = FlexibleUNet(3, 2, backbone="resnet18", pretrained=False, spatial_dims=2)
    cuda_fp32 = AmpPlan(False, None, "cuda", "test")
    assert resolve_channels_last("auto", flex, FP32) is avx512  # ImageNet-style encoder: faster in fp32 with AVX-512
    assert resolve_channels_last("auto", flex, None) is avx512
    assert resolve_channels_last("auto", flex, cuda_fp32) is True
    assert resolve_channels_last("auto", unet, FP32) is False  # small UNet in fp32: no gain
    assert resolve_channels_last("auto", unet, cuda_fp32) is False
    assert resolve_channels_last("auto", unet, BF16) is True  # low-precision kernels prefer NHWC
    assert resolve_channels_last("auto", unet, None) is False
    assert resolve_channels_last(False, flex, BF16) is False
    assert resolve_channels_last("true", unet, FP32) is True


@pytest.mark.parametrize(
    "name, kwargs", [("channels_last", {"channels_last": "maybe"}), ("compile", {"compile": "auto"})]
)
def test_bad_settings_are_one_line(name, kwargs):
    with pytest.raises(BundleInputError) as info:
        prepare_network(small_unet(), "cpu", **kwargs)
    assert str(info.value).startswith(f"{name}: ") and "\n" not in str(info.value)


def test_compile_falls_back_to_eager_with_one_warning(monkeypatch):
    calls = []

    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            calls.append(1)
            raise RuntimeError("InductorError: no working C++ compiler found\nlong traceback ...")

        return run

    monkeypatch.setattr(network_module.torch, "compile", broken_compile)
    net = prepare_network(small_unet(), "cpu", channels_last=False, compile=True)
    x = MetaTensor(torch.rand(2, 1, 16, 16))
    expected = small_unet()(x)
    assert is_compiled(net)
    with pytest.warns(
        RuntimeWarning,
        match=r"^compile: torch.compile failed on this platform \(RuntimeError: "
        r"InductorError: no working C\+\+ compiler found\); running eager$",
    ):
        out = net(x)
    torch.testing.assert_close(out, expected)
    assert not is_compiled(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # eager from now on, silently
        net(x)
    assert len(calls) == 1
    assert "forward" not in uncompile_network(net).__dict__


def test_compile_keeps_state_dict_keys_and_trains(monkeypatch):
    # a stand-in compiler (the real one needs minutes on 2 cores): the wrapper must pass plain tensors and gradients
    seen = []

    def fake_compile(fn, **kwargs):
        def run(x, *args, **kw):
            seen.append(type(x))
            return fn(x, *args, **kw)

        return run

    monkeypatch.setattr(network_module.torch, "compile", fake_compile)
    net = prepare_network(small_unet().train(), "cpu", channels_last=False, compile="true")
    keys = set(small_unet().state_dict())
    assert set(net.state_dict()) == keys
    net(MetaTensor(torch.rand(2, 1, 16, 16))).mean().backward()
    assert seen == [torch.Tensor]
    assert all(p.grad is not None for p in net.parameters())


def test_unavailable_compile_leaves_network_eager(monkeypatch):
    def missing(fn, **kwargs):
        raise RuntimeError("Dynamo is not supported on Python 3.99+")

    monkeypatch.setattr(network_module.torch, "compile", missing)
    with pytest.warns(RuntimeWarning, match="compile: torch.compile is unavailable here"):
        net = prepare_network(small_unet(), "cpu", compile=True)
    assert not is_compiled(net)


def test_prepare_batch_disabled_and_non_4d():
    batch = {"image": torch.rand(2, 3, 8, 8), "label": torch.zeros(2, 1, 8, 8)}
    image, _ = ChannelsLastPrepareBatch(enabled=False)(batch, "cpu")
    assert image.is_contiguous()
    volume, _ = ChannelsLastPrepareBatch()(
        {"image": torch.rand(1, 3, 4, 4, 4), "label": torch.zeros(1, 1, 4, 4, 4)}, "cpu"
    )
    assert volume.is_contiguous()


@pytest.mark.parametrize("enabled", [True, False])
def test_prepare_batch_plain_tensors_drops_only_the_metadata(enabled):
    from monai.data import MetaTensor

    image = MetaTensor(torch.rand(2, 3, 8, 8), meta={"filename_or_obj": ["a.png", "b.png"]})
    label = MetaTensor(torch.randint(0, 2, (2, 1, 8, 8)).float())
    batch = {"image": image, "label": label}
    kept_image, kept_label = ChannelsLastPrepareBatch(enabled=enabled)(batch, "cpu")
    assert isinstance(kept_image, MetaTensor) and isinstance(kept_label, MetaTensor)
    plain_image, plain_label = ChannelsLastPrepareBatch(enabled=enabled, plain_tensors=True)(batch, "cpu")
    assert type(plain_image) is torch.Tensor and type(plain_label) is torch.Tensor
    assert torch.equal(plain_image, image.as_tensor()) and torch.equal(plain_label, label.as_tensor())
    assert plain_image.is_contiguous(memory_format=torch.channels_last) is enabled
