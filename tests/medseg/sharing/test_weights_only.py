"""Every loader reads weights only: a checkpoint that would run code when unpickled is refused, and never runs.

``--resume`` (``ResumeCheckpoint``), ``--init_weights`` (``InitialWeights``), ``--ckpt_path``
(``BundleCheckpointLoader`` and ``load_checkpoint_into``), encoder weights, ``medseg package --run`` and
``medseg predict --trust`` (the bundle's ``models/model.pt``) each get a torch checkpoint whose pickle calls
``os.system``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from medseg import cli


class Evil:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


@pytest.fixture
def evil_checkpoint(tmp_path) -> tuple[Path, Path]:
    """A torch checkpoint shaped like a resume/model checkpoint, with a payload; and its sentinel."""
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "medseg": {"bundle": "x"}, "payload": Evil(sentinel)}, path)
    return path, sentinel


def _network():
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,))


def test_payload_is_live(evil_checkpoint):
    """Unrestricted unpickling of the file does run the payload (so the tests below can fail)."""
    path, sentinel = evil_checkpoint
    torch.load(path, weights_only=False)
    assert sentinel.exists()


def test_resume(evil_checkpoint, tmp_path):
    from medseg.strategies.errors import StrategyError
    from medseg.strategies.resume import ResumeCheckpoint

    path, sentinel = evil_checkpoint
    with pytest.raises(StrategyError, match="not a weights-only checkpoint"):
        ResumeCheckpoint(save_dir=str(tmp_path / "resume"), resume=str(path))._read_and_check(None)
    assert not sentinel.exists()


def test_init_weights(evil_checkpoint):
    from medseg.bundle.errors import BundleInputError
    from medseg.strategies.progressive import InitialWeights

    path, sentinel = evil_checkpoint
    with pytest.raises(BundleInputError, match="not a readable PyTorch checkpoint"):
        InitialWeights(str(path)).load(_network())
    assert not sentinel.exists()


def test_ckpt_path_handler_and_loader(evil_checkpoint):
    from medseg.bundle import load_checkpoint_into
    from medseg.bundle.errors import BundleInputError
    from medseg.handlers.checkpoint import BundleCheckpointLoader

    path, sentinel = evil_checkpoint
    network = _network()
    with pytest.raises(BundleInputError, match="not a readable PyTorch checkpoint"):
        BundleCheckpointLoader(load_path=str(path), load_dict={"model": network})(None)
    with pytest.raises(BundleInputError, match="not a readable PyTorch checkpoint"):
        load_checkpoint_into(network, path)
    assert not sentinel.exists()


def test_encoder_weights(evil_checkpoint):
    from monai.networks.nets import FlexibleUNet

    from medseg.networks import load_encoder_weights

    path, sentinel = evil_checkpoint
    network = FlexibleUNet(in_channels=3, out_channels=2, backbone="mobilenet_v2", spatial_dims=2)
    with pytest.raises(ValueError, match="could not be read as a PyTorch weights file"):
        load_encoder_weights(network, path)
    assert not sentinel.exists()


def test_package_run(evil_checkpoint, rgb_bundle, tmp_path, monkeypatch, capsys):
    path, sentinel = evil_checkpoint
    monkeypatch.setitem(cli.COMMANDS, "package", cli.COMMANDS["package"])
    args = ["package", "--bundle", str(rgb_bundle), "--run", str(path), "--out", str(tmp_path / "dist")]
    assert cli.main([*args, "--schema", str(rgb_bundle / "configs" / "meta_schema.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot be loaded with weights_only=True" in err and str(path) in err
    assert not sentinel.exists() and not any((tmp_path / "dist").iterdir())


def test_predict_trust_reads_model_pt_weights_only(evil_checkpoint, package_copy, tmp_path):
    """Even --trust (the bundle's own configs) loads models/model.pt weights-only."""
    from medseg.sharing.errors import SharingError
    from medseg.sharing.predict import predict
    from tests.medseg.sharing.conftest import write_rgb_images

    path, sentinel = evil_checkpoint
    shutil.copy(path, package_copy / "models" / "model.pt")
    write_rgb_images(tmp_path / "in")
    with pytest.raises(SharingError):
        predict(package_copy, tmp_path / "in", tmp_path / "out", trust=True)
    assert not sentinel.exists() and not (tmp_path / "out").exists()
