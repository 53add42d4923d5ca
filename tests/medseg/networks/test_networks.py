"""One tester for every network the bundles use, plus medseg's encoders, local weights and size rules.

Each network runs in a small configuration (64-96 px, batch 2) through the same checks, in the style of
segmentation_models_pytorch's tests: output shape, gradients, odd input sizes, determinism, state-dict round trip and
TorchScript export as MONAI's ``ckpt_export`` does it (``convert_to_torchscript`` with ``torch.jit.script``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
import torchvision
from monai.networks.nets import DynUNet, FlexibleUNet, UNet
from monai.networks.utils import convert_to_torchscript

import medseg.networks as networks
from medseg.bundle.errors import BundleInputError
from medseg.bundle.sizes import check_spatial_size
from medseg.networks import (
    FPN,
    CourseworkUNet,
    DeepLabV3,
    DeepLabV3Plus,
    StackedDeepSupervisionLoss,
    UNet3Plus,
    load_encoder_weights,
    size_divisor,
)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run torch on one thread: on the shared 2-core CI machine, intra-op threads triple the CPU time of this file."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class NetworkCase:
    """A network as a bundle builds it, in a small configuration."""

    name: str
    build: Callable[[], torch.nn.Module]
    in_channels: int
    out_channels: int
    size: tuple[int, int] = (64, 64)
    deep_supervision: int = 0  # number of extra deep-supervision heads returned in train mode
    # how MONAI's ckpt_export must be told to export it: "script" (its default), "trace" (--use_trace True) or
    # "trace_fixed_size" (a trace that only holds for the input size it was traced with)
    export: str = "script"
    any_size: bool = False  # the network takes any input size (it resizes its output), not only multiples


def _dynunet_deep_supervision() -> DynUNet:
    return DynUNet(
        2,
        1,
        4,
        kernel_size=[3, 3, 3, 3],
        strides=[1, 2, 2, 2],
        upsample_kernel_size=[2, 2, 2],
        filters=[8, 16, 32, 64],
        deep_supervision=True,
        deep_supr_num=2,
    )


CASES = [
    NetworkCase(
        "unet_1to4",
        lambda: UNet(2, 1, 4, channels=(8, 16, 32, 64), strides=(2, 2, 2), num_res_units=2),
        in_channels=1,
        out_channels=4,
    ),
    NetworkCase(
        "unet_3to2",
        lambda: UNet(2, 3, 2, channels=(8, 16, 32, 64), strides=(2, 2, 2), num_res_units=2),
        in_channels=3,
        out_channels=2,
    ),
    # MONAI 1.6.1's DynUNet cannot be scripted with deep_supervision=True (the Optional `heads` list defeats
    # TorchScript), and ckpt_export loads checkpoints strictly, so a deep_supervision=False override cannot load the
    # trained heads either: it is exported with --use_trace True (eval mode returns the main output only).
    NetworkCase(
        "dynunet_deep_supervision",
        _dynunet_deep_supervision,
        in_channels=1,
        out_channels=4,
        size=(96, 96),
        deep_supervision=2,
        export="trace",
    ),
    NetworkCase("flexunet_tv_resnet34_2", lambda: FlexibleUNet(3, 2, "tv_resnet34", spatial_dims=2), 3, 2),
    NetworkCase("flexunet_tv_resnet34_8", lambda: FlexibleUNet(3, 8, "tv_resnet34", spatial_dims=2), 3, 8),
    NetworkCase("flexunet_mobilenet_v2_2", lambda: FlexibleUNet(3, 2, "mobilenet_v2", spatial_dims=2), 3, 2),
    # MONAI's own resnet34 trains in 2D, but its parameter-free shortcuts (functools.partial) cannot be scripted, and
    # their zero padding is traced with a constant shape: ckpt_export --use_trace True gives a model that only takes
    # the traced size. torchvision's ImageNet weights do not fit it either (see weights.py): bundles use tv_resnet34.
    NetworkCase(
        "flexunet_monai_resnet34_2",
        lambda: FlexibleUNet(3, 2, "resnet34", spatial_dims=2),
        3,
        2,
        export="trace_fixed_size",
    ),
    # the networks of the published comparisons (medseg.networks), in small configurations
    NetworkCase("fpn_tv_resnet34", lambda: FPN(3, 2, "tv_resnet34"), 3, 2),
    NetworkCase("fpn_mobilenet_v2", lambda: FPN(3, 2, "mobilenet_v2"), 3, 2),
    NetworkCase("deeplabv3_resnet18", lambda: DeepLabV3(2, 1, 4, backbone="resnet18"), 1, 4, any_size=True),
    NetworkCase("deeplabv3plus_resnet34", lambda: DeepLabV3Plus(2, 1, 4, backbone="resnet34"), 1, 4, any_size=True),
    NetworkCase(
        "unet3plus_deep_supervision",
        lambda: UNet3Plus(2, 1, 4, filters=(8, 16, 32, 64, 128), deep_supervision=True),
        in_channels=1,
        out_channels=4,
        deep_supervision=4,
    ),
    NetworkCase("unet3plus_3to2", lambda: UNet3Plus(2, 3, 2, filters=(8, 16, 32, 64)), 3, 2),
    NetworkCase("coursework_unet", lambda: CourseworkUNet(2, 1, 4, channels=(8, 16, 32, 64)), 1, 4),
]


def _build(case: NetworkCase, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return case.build()


def _input(case: NetworkCase, size: tuple[int, int] | None = None, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, case.in_channels, *(size or case.size), generator=generator)


@dataclass
class Built:
    """A network built once per case, in eval mode, with its output on a fixed input."""

    case: NetworkCase
    network: torch.nn.Module
    image: torch.Tensor
    output: torch.Tensor


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def built(request) -> Built:
    case = request.param
    network = _build(case).eval()
    image = _input(case)
    with torch.no_grad():
        output = network(image)
    return Built(case, network, image, output)


class TestNetwork:
    """The same checks for every network; tests must leave ``built.network`` as they found it (eval, same weights)."""

    def test_forward_shape(self, built):
        assert built.output.shape == (2, built.case.out_channels, *built.case.size)
        assert torch.isfinite(built.output).all()

    def test_eval_is_deterministic(self, built):
        with torch.no_grad():
            assert torch.equal(built.network(built.image), built.output)

    def test_train_forward_and_backward_reach_every_parameter(self, built):
        case = built.case
        network = copy.deepcopy(built.network).train()  # train mode updates batch-norm statistics
        output = network(built.image)
        if case.deep_supervision:  # stacked: the main output, then the heads upsampled to the input size
            assert output.shape == (2, case.deep_supervision + 1, case.out_channels, *case.size)
        else:
            assert output.shape == (2, case.out_channels, *case.size)
        output.square().mean().backward()
        trainable = [(n, p) for n, p in network.named_parameters() if p.requires_grad]
        without = [n for n, p in trainable if p.grad is None]
        assert not without, f"parameters without gradient: {without[:5]}"
        assert all(torch.isfinite(p.grad).all() for _, p in trainable)
        assert any(p.grad.abs().sum() > 0 for _, p in trainable)

    def test_odd_input_size_padded_to_divisor(self, built):
        divisor = size_divisor(built.network)
        odd = (67, 93)
        image = _input(built.case, odd)
        padded_size = [-(-s // divisor) * divisor for s in odd]
        # symmetric padding as DivisiblePadd does, cropped back after the forward pass
        before = [(p - s) // 2 for p, s in zip(padded_size, odd, strict=True)]
        after = [p - s - b for p, s, b in zip(padded_size, odd, before, strict=True)]
        padded = F.pad(image, (before[1], after[1], before[0], after[0]))
        with torch.no_grad():
            output = built.network(padded)[..., before[0] : before[0] + odd[0], before[1] : before[1] + odd[1]]
        assert output.shape == (2, built.case.out_channels, *odd)
        assert torch.isfinite(output).all()

    def test_odd_input_size_runs_or_names_the_rule(self, built):
        """Unpadded odd sizes: networks that resize their output take them; the others refuse in one line."""
        image = _input(built.case, (67, 93))
        if built.case.any_size:
            with torch.no_grad():
                assert built.network(image).shape == (2, built.case.out_channels, 67, 93)
        elif isinstance(built.network, (FPN, UNet3Plus, CourseworkUNet)):  # medseg's networks check their input
            with pytest.raises(ValueError, match=rf"needs height and width that are multiples of {size_divisor(built.network)}, got 67x93; pad with DivisiblePadd"):  # noqa: E501
                built.network(image)
        else:  # MONAI's networks fail inside; bundles check spatial_size first (check_spatial_size)
            with pytest.raises(RuntimeError):
                built.network(image)

    def test_state_dict_round_trip(self, built, tmp_path):
        torch.save(built.network.state_dict(), tmp_path / "net.pt")
        restored = _build(built.case, seed=123).eval()
        differs = [k for k, v in restored.state_dict().items() if not torch.equal(v, built.network.state_dict()[k])]
        assert differs, "a different seed should give different weights"
        restored.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
        with torch.no_grad():
            assert torch.equal(restored(built.image), built.output)

    def test_torchscript_export_matches_eager(self, built, tmp_path):
        """Export as MONAI's ckpt_export does (convert_to_torchscript), reload the file and compare with eager."""
        case = built.case
        trace = case.export.startswith("trace")
        convert_to_torchscript(
            built.network, tmp_path / "net.ts", use_trace=trace, inputs=[built.image] if trace else None
        )
        reloaded = torch.jit.load(tmp_path / "net.ts")
        with torch.no_grad():
            torch.testing.assert_close(reloaded(built.image), built.output, rtol=0, atol=1e-5)
        other = _input(case, (case.size[0], 2 * case.size[1]), seed=5)  # another valid size than the traced one
        with torch.no_grad():
            if case.export == "trace_fixed_size":
                with pytest.raises(RuntimeError):
                    reloaded(other)
            else:
                torch.testing.assert_close(reloaded(other), built.network(other), rtol=0, atol=1e-5)


def test_size_divisor():
    assert size_divisor(FlexibleUNet(3, 2, "mobilenet_v2")) == 32
    assert size_divisor(UNet(2, 1, 2, channels=(4, 8, 16, 32, 64), strides=(2, 2, 2, 2))) == 16
    assert size_divisor(UNet(2, 1, 2, channels=(4, 8), strides=((2, 3),))) == 6
    dynunet = DynUNet(2, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 16])
    assert size_divisor(dynunet) == 4
    assert size_divisor(torch.nn.DataParallel(dynunet)) == 4


def test_size_divisor_is_needed():
    """The divisor is not too generous: a UNet fails on a size that is a multiple of half of it only."""
    network = UNet(2, 1, 2, channels=(4, 8, 16, 32), strides=(2, 2, 2)).eval()
    assert size_divisor(network) == 8
    with torch.no_grad():
        assert network(torch.zeros(1, 1, 72, 72)).shape[-2:] == (72, 72)
        with pytest.raises(RuntimeError):
            network(torch.zeros(1, 1, 76, 76))


def test_size_divisor_unknown_network():
    with pytest.raises(TypeError, match="Conv2d.*DivisiblePadd"):
        size_divisor(torch.nn.Conv2d(1, 1, 3))


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "tv_resnet34"])
def test_pretrained_true_refuses_to_download(backbone):
    with pytest.raises(ValueError, match="never downloads.*load_encoder_weights"):
        FlexibleUNet(3, 2, backbone, pretrained=True)


def test_mobilenet_is_2d_only():
    with pytest.raises(ValueError, match="2D only"):
        FlexibleUNet(3, 2, "mobilenet_v2", spatial_dims=3)


# ---------------------------------------------------------------- load_encoder_weights


@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory):
    """State dicts of randomly initialised torchvision models, laid out as the files torchvision caches."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(7)
    files = {
        "tv_resnet34": (folder / "resnet34-b627a593.pth", torchvision.models.resnet34()),
        "mobilenet_v2": (folder / "mobilenet_v2-b0353104.pth", torchvision.models.mobilenet_v2()),
    }
    for path, model in files.values():
        torch.save(model.state_dict(), path)
    return {name: (path, model.eval()) for name, (path, model) in files.items()}


def _assert_encoder_holds(network: FlexibleUNet, source: dict[str, torch.Tensor]) -> None:
    encoder_state = network.encoder.state_dict()
    expected = {k: v for k, v in source.items() if not k.startswith(("fc.", "classifier."))}
    assert set(encoder_state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(encoder_state[key], value), key


@pytest.mark.parametrize("backbone", ["tv_resnet34", "mobilenet_v2"])
def test_load_torchvision_file_sets_encoder_exactly(backbone, torchvision_files, caplog):
    path, model = torchvision_files[backbone]
    network = FlexibleUNet(3, 2, backbone)
    decoder_before = {k: v.clone() for k, v in network.decoder.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="medseg.networks.weights"):
        assert load_encoder_weights(network, str(path)) is network
    _assert_encoder_holds(network, model.state_dict())
    n_tensors = len(network.encoder.state_dict())
    assert f"loaded {n_tensors} of {n_tensors} encoder tensors from {path}" in caplog.text
    assert all(torch.equal(decoder_before[k], v) for k, v in network.decoder.state_dict().items())


def test_tv_resnet34_encoder_computes_torchvision_resnet34(torchvision_files):
    path, model = torchvision_files["tv_resnet34"]
    network = load_encoder_weights(FlexibleUNet(3, 2, "tv_resnet34"), path).eval()
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        deepest = network.encoder(image)[-1]
        stem = model.maxpool(model.relu(model.bn1(model.conv1(image))))
        expected = model.layer4(model.layer3(model.layer2(model.layer1(stem))))
    torch.testing.assert_close(deepest, expected, rtol=0, atol=1e-6)


def test_mobilenet_encoder_computes_torchvision_features(torchvision_files):
    path, model = torchvision_files["mobilenet_v2"]
    network = load_encoder_weights(FlexibleUNet(3, 2, "mobilenet_v2"), path).eval()
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(network.encoder(image)[-1], model.features(image), rtol=0, atol=1e-6)


@pytest.mark.parametrize("wrap", ["state_dict", "model", "encoder_layout", "whole_flexunet", "ddp_prefix"])
def test_load_accepts_checkpoint_layouts(wrap, torchvision_files, tmp_path):
    path, model = torchvision_files["mobilenet_v2"]
    source = model.state_dict()
    if wrap in ("state_dict", "model"):
        content = {wrap: source, "epoch": torch.tensor(3)}
    elif wrap == "encoder_layout":
        content = load_encoder_weights(FlexibleUNet(3, 2, "mobilenet_v2"), path).encoder.state_dict()
    elif wrap == "whole_flexunet":
        content = load_encoder_weights(FlexibleUNet(3, 5, "mobilenet_v2"), path).state_dict()
    else:
        content = {f"module.{k}": v for k, v in source.items()}
    torch.save(content, tmp_path / "weights.pt")
    network = load_encoder_weights(FlexibleUNet(3, 2, "mobilenet_v2"), tmp_path / "weights.pt")
    _assert_encoder_holds(network, source)


@pytest.mark.parametrize("path", [None, ""])
def test_no_weights_file_leaves_network_unchanged(path):
    network = FlexibleUNet(3, 2, "mobilenet_v2")
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert load_encoder_weights(network, path) is network
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


def test_grey_input_sums_rgb_filters(torchvision_files):
    """One input channel: the grey network computes what the RGB network computes on the grey image in 3 channels."""
    path, _ = torchvision_files["tv_resnet34"]
    grey = load_encoder_weights(FlexibleUNet(1, 2, "tv_resnet34"), path).eval()
    rgb = load_encoder_weights(FlexibleUNet(3, 2, "tv_resnet34"), path).eval()
    image = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        grey_features, rgb_features = grey.encoder(image), rgb.encoder(image.repeat(1, 3, 1, 1))
    # equal up to float summation order, which 34 layers amplify a little
    torch.testing.assert_close(grey_features[0], rgb_features[0], rtol=1e-4, atol=1e-5)
    scale = rgb_features[-1].abs().max().item()
    torch.testing.assert_close(grey_features[-1], rgb_features[-1], rtol=1e-3, atol=1e-4 * scale)


def test_two_channel_input_repeats_and_rescales(torchvision_files):
    path, model = torchvision_files["mobilenet_v2"]
    network = load_encoder_weights(FlexibleUNet(2, 2, "mobilenet_v2"), path)
    rgb = model.state_dict()["features.0.0.weight"]
    torch.testing.assert_close(network.encoder.state_dict()["features.0.0.weight"], rgb[:, :2] * 1.5)


def test_missing_file_names_file_and_fix(tmp_path):
    missing = tmp_path / "mobilenet_v2-b0353104.pth"
    with pytest.raises(FileNotFoundError, match=rf"{missing}.*never downloads.*encoder_weights"):
        load_encoder_weights(FlexibleUNet(3, 2, "mobilenet_v2"), missing)


@pytest.mark.parametrize("content", ["text", "pickled_module", "list", "empty_dict", "non_tensor_values"])
def test_not_a_state_dict(content, tmp_path):
    path = tmp_path / "weights.pth"
    if content in ("text", "pickled_module"):
        if content == "text":
            path.write_text("not a checkpoint")
        else:  # a whole pickled model, which weights_only=True refuses to unpickle
            torch.save(torch.nn.Linear(2, 2), path)
        match = "could not be read as a PyTorch weights file.*state_dict"
    else:
        torch.save({"list": [1, 2], "empty_dict": {}, "non_tensor_values": {"conv1.weight": 1.0}}[content], path)
        match = "not a state dict.*torch.save"
    with pytest.raises(ValueError, match=rf"{path}.*{match}"):
        load_encoder_weights(FlexibleUNet(3, 2, "mobilenet_v2"), path)


def test_other_architecture_is_named(torchvision_files):
    path, _ = torchvision_files["mobilenet_v2"]
    with pytest.raises(ValueError, match=r"holds mobilenet_v2 weights.*'tv_resnet34' encoder has the resnet34 layout"):
        load_encoder_weights(FlexibleUNet(3, 2, "tv_resnet34"), path)


def test_shape_mismatch_names_tensor(torchvision_files, tmp_path):
    path, model = torchvision_files["tv_resnet34"]
    state = model.state_dict()
    state["layer3.0.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"layer3\.0\.conv2\.weight: file \(256, 256, 1, 1\) vs encoder"):
        load_encoder_weights(FlexibleUNet(3, 2, "tv_resnet34"), tmp_path / "bad.pth")


def test_monai_resnet34_points_to_tv_resnet34(torchvision_files, caplog):
    """MONAI's resnet34 has parameter-free shortcuts: strict refuses with the fix; strict=False loads the rest."""
    path, model = torchvision_files["tv_resnet34"]
    with pytest.raises(ValueError, match=r"layer2\.0\.downsample.*use backbone 'tv_resnet34'"):
        load_encoder_weights(FlexibleUNet(3, 2, "resnet34"), path)
    network = FlexibleUNet(3, 2, "resnet34")
    with caplog.at_level(logging.INFO, logger="medseg.networks.weights"):
        load_encoder_weights(network, path, strict=False)
    source = model.state_dict()
    encoder_state = network.encoder.state_dict()
    assert all(torch.equal(v, source[k]) for k, v in encoder_state.items())
    assert f"loaded {len(encoder_state)} of {len(encoder_state)} encoder tensors" in caplog.text
    assert "18 file tensors the encoder lacks" in caplog.text


def test_network_without_encoder(torchvision_files):
    path, _ = torchvision_files["tv_resnet34"]
    with pytest.raises(ValueError, match=r"UNet has no encoder.*encoder_weights"):
        load_encoder_weights(UNet(2, 1, 2, channels=(4, 8), strides=(2,)), path)


def test_registered_backbones():
    from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

    for name in ("mobilenet_v2", "tv_resnet18", "tv_resnet34", "tv_resnet50"):
        assert name in FLEXUNET_BACKBONE.register_dict
    assert FLEXUNET_BACKBONE.register_dict["mobilenet_v2"]["type"] is networks.MobileNetV2Encoder


# ---------------------------------------------------------------- the networks of the published comparisons


def _n_parameters(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def test_unet3plus_reference_parameter_count():
    """The paper's Table 1: UNet 3+ (VGG-16-like encoder, filters 64..1024) has 26.97 M parameters.

    Reference setting reproduced: 3 input channels, 1 output channel (the paper's binary liver/spleen task), no deep
    supervision heads and no classification-guided module (those add 19,910 parameters here and are not counted in
    the paper's figure, which is the authors' plain ``UNet_3Plus``).
    """
    network = UNet3Plus(2, 3, 1, filters=(64, 128, 256, 512, 1024))
    assert round(_n_parameters(network) / 1e6, 2) == 26.97
    assert _n_parameters(network) == 26_971_777
    extended = UNet3Plus(2, 3, 1, deep_supervision=True, classification_guided=True)
    # three 3x3 heads 320 -> 1 (decoder levels 2-4; level 1 has the main head), one 3x3 head 1024 -> 1 (bottom),
    # the 1x1 classifier 1024 -> 2
    assert _n_parameters(extended) - _n_parameters(network) == 3 * (320 * 9 + 1) + (1024 * 9 + 1) + (1024 * 2 + 2)


def test_unet3plus_full_scale_skips_reach_every_decoder_level():
    """Every decoder level concatenates one branch per encoder level (full-scale skips), fused at 5 x 64 channels."""
    network = UNet3Plus(2, 1, 2)
    assert len(network.decoder) == 4
    for level in network.decoder:
        assert len(level.branches) == 5
        assert all(branch.conv[0].out_channels == 64 for branch in level.branches)
        assert level.fuse[0].in_channels == 320


def test_unet3plus_classification_guided_module():
    torch.manual_seed(0)
    network = UNet3Plus(2, 1, 2, filters=(8, 16, 32), classification_guided=True).eval()
    image = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        logits = network.presence_logits(image)
        output = network(image)
        plain = torch.nn.Module.__call__(network, image)  # same path again: deterministic
    assert logits.shape == (3, 2)
    assert torch.equal(output, plain)
    absent = logits.argmax(dim=1) == 0
    assert torch.all(output[absent] == 0) and torch.all(output[~absent] != 0)
    # the classifier is trained through presence_logits with its own loss (the argmax carries no gradient)
    network.train()
    F.cross_entropy(network.presence_logits(image), torch.tensor([0, 1, 1])).backward()
    assert network.presence[1].weight.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="without the classification-guided module"):
        UNet3Plus(2, 1, 2, filters=(8, 16)).presence_logits(image)


def test_deeplabv3_is_torchvisions_architecture():
    """With a ResNet50 and 3 channels, DeepLabV3 has exactly the tensors of torchvision's deeplabv3_resnet50."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    ours = DeepLabV3(2, 3, 4, backbone="resnet50").model.state_dict()
    reference = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=4, aux_loss=False).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in reference.items()}


@pytest.mark.parametrize(("network", "stride"), [(DeepLabV3(2, 1, 2, "resnet18"), 8), (DeepLabV3Plus(2, 1, 2), 16)])
def test_deeplab_output_stride_and_grey_input(network, stride):
    network.eval()
    getter = network.model.backbone if isinstance(network, DeepLabV3) else network.features
    with torch.no_grad():
        features = getter(torch.randn(1, 1, 64, 96))
    assert features["out"].shape[-2:] == (64 // stride, 96 // stride)
    assert size_divisor(network) == stride


def test_fpn_loads_local_encoder_weights_for_grey_input(torchvision_files):
    """FPN's encoder is medseg's tv_resnet34, so torchvision's file loads into it (RGB filters summed for 1 channel)."""
    path, model = torchvision_files["tv_resnet34"]
    network = load_encoder_weights(FPN(1, 2, "tv_resnet34"), path)
    torch.testing.assert_close(network.encoder.conv1.weight, model.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(network.encoder.layer4[2].conv2.weight, model.layer4[2].conv2.weight)


def test_fpn_unknown_backbone_lists_registered():
    with pytest.raises(ValueError, match=r"unknown FPN backbone 'resnet35'; registered backbones: .*tv_resnet34"):
        FPN(3, 2, "resnet35")


def test_new_networks_size_divisor_and_rule_check():
    assert size_divisor(FPN(3, 2, "mobilenet_v2")) == 32
    assert size_divisor(UNet3Plus(2, 1, 2, filters=(4, 8, 16))) == 4
    assert size_divisor(CourseworkUNet(2, 1, 2, channels=(4, 8, 16, 32))) == 8
    assert check_spatial_size([96, 96], UNet3Plus(2, 1, 2, filters=(4, 8, 16, 32, 64))) == [96, 96]
    with pytest.raises(BundleInputError, match=r"spatial_size \[40, 40\] must be multiples of 16 for this UNet3Plus"):
        check_spatial_size([40, 40], UNet3Plus(2, 1, 2, filters=(4, 8, 16, 32, 64)))
    network = CourseworkUNet(2, 1, 2, channels=(4, 8, 16, 32)).eval()  # the divisor is needed, not too generous
    with torch.no_grad():
        assert network(torch.zeros(1, 1, 24, 24)).shape[-2:] == (24, 24)
        with pytest.raises(ValueError, match="multiples of 8, got 20x20"):
            network(torch.zeros(1, 1, 20, 20))


def test_unknown_network_name_lists_registered():
    with pytest.raises(networks.UnknownNetworkError, match=r"'unet4plus' is not registered; registered networks: unet, unet3plus, deeplabv3"):  # noqa: E501
        networks.get_network("unet4plus")
    with pytest.raises(AttributeError, match=r"medseg.networks has no 'UNet4Plus'; its networks .*UNet3Plus"):
        networks.UNet4Plus  # noqa: B018
    assert networks.variant_files("unet", "train.json") == ["train.json"]
    files = networks.variant_files("unet3plus", "bundles/cardiac_unet/configs/train.json")
    assert files[1].endswith("bundles/variants/cardiac_unet3plus.json")


def test_stacked_deep_supervision_loss():
    from monai.losses import DiceLoss

    base = DiceLoss(to_onehot_y=True, softmax=True)
    loss = StackedDeepSupervisionLoss(base, weight_mode="exp")
    generator = torch.Generator().manual_seed(0)
    heads = torch.randn(2, 3, 4, 16, 16, generator=generator)
    target = torch.randint(0, 4, (2, 1, 16, 16), generator=generator)
    expected = sum(w * base(heads[:, i], target) for i, w in enumerate((1.0, 0.5, 0.25)))  # MONAI: no normalising
    torch.testing.assert_close(loss(heads, target), expected)
    torch.testing.assert_close(loss(heads[:, 0], target), base(heads[:, 0], target))


@pytest.mark.parametrize(("size", "divisor", "expected"), [(168, 32, 160), (224, 32, 224), (144, 32, 128),
                                                           (176, 32, 192), (10, 32, 32), (48.0, 16, 48)])
def test_nearest_multiple_rounds_to_a_size_the_network_takes(size, divisor, expected):
    from medseg.networks import nearest_multiple

    assert nearest_multiple(size, divisor) == expected
