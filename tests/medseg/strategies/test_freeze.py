"""Frozen encoder, two learning rates and the two-stage recipe, on a tiny FlexibleUNet (resnet10, batch norm)."""

from __future__ import annotations

import pytest
import torch

from medseg.strategies import StrategyError
from medseg.strategies.freeze import FreezeLayers, encoder_decoder_param_groups
from medseg.strategies.launch import load_config, run_bundle

pytestmark = pytest.mark.slow


def _initial_weights(bundle, path):
    """A random network of the bundle, saved: the known starting point of a run (init_weights.json)."""
    torch.manual_seed(3)
    network = load_config(bundle, [], {"bundle_root": str(bundle)}).get_parsed_content("network_def")
    torch.save(network.state_dict(), path)
    return torch.load(path)


def _train(bundle, out, strategies, **overrides):
    """Train from init_weights; the weights of the last epoch (resume.json's last.pt: model.pt is the best epoch)."""
    overrides = {"bundle_root": str(bundle), "output_dir": str(out), **overrides}
    run_bundle(bundle, ["init_weights", *strategies, "resume"], overrides)
    return torch.load(out / "resume" / "last.pt", map_location="cpu", weights_only=False)["model"]


def _changed(before, after, keys):
    return [k for k in keys if not torch.equal(before[k], after[k])]


def test_frozen_encoder_changes_no_encoder_weight(flex_bundle, tmp_path):
    before = _initial_weights(flex_bundle, tmp_path / "init.pt")
    after = _train(flex_bundle, tmp_path / "run", ["freeze_encoder"], init_weights=str(tmp_path / "init.pt"))
    encoder = [k for k in before if k.startswith("encoder.")]
    decoder = [k for k in before if not k.startswith("encoder.") and before[k].is_floating_point()]
    assert encoder and decoder
    assert _changed(before, after, encoder) == []  # weights and batch-norm statistics alike
    assert len(_changed(before, after, decoder)) > len(decoder) // 2


def test_two_stage_unfreezes_all_but_batchnorm(flex_bundle, tmp_path):
    before = _initial_weights(flex_bundle, tmp_path / "init.pt")
    after = _train(
        flex_bundle,
        tmp_path / "run",
        ["two_stage_unfreeze"],
        init_weights=str(tmp_path / "init.pt"),
        unfreeze_epoch=1,
        max_epochs=2,
    )
    network = load_config(flex_bundle, [], {"bundle_root": str(flex_bundle)}).get_parsed_content("network_def")
    # the encoder's batch norm: frozen with the encoder in stage 1, kept frozen in stage 2
    norm = [
        f"{name}.{key}"
        for name, m in network.encoder.named_modules()
        if isinstance(m, torch.nn.BatchNorm2d)
        for key in ("weight", "bias", "running_mean", "running_var")
    ]
    convs = [k for k in before if k.startswith("encoder.") and k.endswith("conv1.weight")]
    assert norm and convs
    assert _changed(before, after, [f"encoder.{k}" for k in norm]) == []
    assert _changed(before, after, convs) == convs  # trained in the second stage


def test_unfreeze_schedule_per_epoch(flex_bundle):
    network = load_config(flex_bundle, [], {"bundle_root": str(flex_bundle)}).get_parsed_content("network_def")
    handler = FreezeLayers(["encoder"], unfreeze_epoch=1, network=network)

    class Engine:  # what the handler reads of an ignite engine
        state = type("State", (), {"epoch": 1})()

        def add_event_handler(self, *args):
            pass

    engine = Engine()
    handler.attach(engine)
    encoder_conv, bn = network.encoder.conv1, network.encoder.bn1
    handler.epoch_started(engine)
    assert not encoder_conv.weight.requires_grad and network.segmentation_head[0].weight.requires_grad
    decoder_norm = [m for m in network.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    network.train()
    assert decoder_norm and all(m.training and m.weight.requires_grad for m in decoder_norm)  # stage 1: trains
    assert not bn.training  # the frozen encoder's batch norm keeps its statistics
    engine.state.epoch = 2
    handler.epoch_started(engine)
    network.train()
    assert encoder_conv.weight.requires_grad
    for norm in [bn, *decoder_norm]:  # every batch norm stays frozen, in eval mode
        assert not norm.weight.requires_grad and not norm.bias.requires_grad and not norm.training


def test_two_learning_rates(flex_bundle):
    network = load_config(flex_bundle, [], {"bundle_root": str(flex_bundle)}).get_parsed_content("network_def")
    groups = encoder_decoder_param_groups(network, 1e-5, 1e-3)
    optimizer = torch.optim.Adam(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-5, 1e-3]
    encoder_ids = {id(p) for p in network.encoder.parameters()}
    assert {id(p) for p in groups[0]["params"]} == encoder_ids
    assert not encoder_ids & {id(p) for p in groups[1]["params"]}


def test_frozen_layer_name_matching_nothing_stops_before_training(unet_bundle, tmp_path):
    with pytest.raises(StrategyError, match=r"'encoder' matches no parameter of UNet.*model"):
        run_bundle(unet_bundle, ["freeze_encoder"], {"bundle_root": str(unet_bundle), "output_dir": str(tmp_path)})
    assert not list(tmp_path.glob("*.pt"))
