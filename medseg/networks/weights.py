"""Load ImageNet-pretrained encoder weights from a LOCAL file into a ``FlexibleUNet``.

medseg never downloads weights. A user who wants an ImageNet start copies torchvision's cached file (on a machine with
internet: ``torchvision.models.resnet34(weights="DEFAULT")`` leaves ``~/.cache/torch/hub/checkpoints/
resnet34-b627a593.pth``) and points a bundle's ``encoder_weights`` at it; the bundle builds its network as
``$medseg.networks.load_encoder_weights(@network_def, @encoder_weights)``.

Input channels other than 3 (grey MRI): the first convolution's RGB filters are adapted as timm and
segmentation_models_pytorch do. For one channel they are summed over R, G and B, so the grey network computes exactly
what the RGB network computes on the grey image copied into three channels; for ``n`` channels the RGB filters are
repeated cyclically and scaled by ``3 / n`` to keep the activations' magnitude.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["load_encoder_weights", "adapt_input_conv", "describe_layout"]

logger = logging.getLogger(__name__)

# torchvision classifier heads, which an encoder has no place for
_HEAD_PREFIXES = ("fc.", "classifier.")
# keys under which training scripts wrap a state dict in a checkpoint
_CHECKPOINT_KEYS = ("state_dict", "model", "network")
# (block type, blocks per stage) -> torchvision name
_RESNET_DEPTHS = {
    ("basic", (1, 1, 1, 1)): "resnet10",
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}
_SHOW = 5  # how many offending keys an error names


def describe_layout(keys: Any) -> str:
    """Name the architecture a set of state dict keys belongs to, for error messages.

    Args:
        keys: state dict keys (encoder layout, torchvision heads allowed).

    Returns:
        e.g. ``"resnet34"``, ``"resnet34 with parameter-free shortcuts (MONAI's layout)"``, ``"mobilenet_v2"``,
        or ``"an unrecognised layout (first keys: ...)"``.
    """
    keys = list(keys)
    if any(k.startswith("features.18.") for k in keys) and any(k.startswith("features.17.conv.") for k in keys):
        return "mobilenet_v2"
    if any(k.startswith("layer1.") for k in keys):
        blocks = []
        for stage in range(1, 5):
            indices = {int(m.group(1)) for k in keys if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
            blocks.append(max(indices) + 1 if indices else 0)
        block = "bottleneck" if any(re.match(r"layer1\.0\.conv3\.", k) for k in keys) else "basic"
        name = _RESNET_DEPTHS.get((block, tuple(blocks)), f"a ResNet with {block} blocks {blocks}")
        if not any(".downsample." in k for k in keys):
            return f"{name} with parameter-free shortcuts (MONAI's layout)"
        return name
    return f"an unrecognised layout (first keys: {keys[:3]})"


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first convolution trained on RGB to ``in_channels`` input channels.

    Args:
        weight: ``(out, 3, *kernel)`` filters.
        in_channels: wanted number of input channels.

    Returns:
        ``(out, in_channels, *kernel)`` filters: for 1 channel the sum over RGB (what the RGB filters compute on a grey
        image copied into three channels); otherwise the RGB filters repeated cyclically and scaled by
        ``3 / in_channels``.

    Raises:
        ValueError: when ``weight`` does not have 3 input channels or ``in_channels < 1``.
    """
    if weight.ndim < 3 or weight.shape[1] != 3:
        raise ValueError(f"only RGB filters (3 input channels) can be adapted, got shape {tuple(weight.shape)}.")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, got {in_channels}.")
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // 3)
    return weight.repeat(1, repeats, *([1] * (weight.ndim - 2)))[:, :in_channels] * (3.0 / in_channels)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read ``path`` safely and unwrap checkpoints, DDP prefixes and full-network state dicts."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types here: unpickling, zip, EOF, ...
        # torch's messages run to many lines, with terminal colour codes
        reason = (re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"{path} could not be read as a PyTorch weights file ({type(error).__name__}: {reason}). "
            "Point encoder_weights at a state dict saved with torch.save(model.state_dict(), path), such as "
            "torchvision's resnet34-b627a593.pth or mobilenet_v2-b0353104.pth."
        ) from error
    if isinstance(loaded, Mapping):
        for key in _CHECKPOINT_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if (
        not isinstance(loaded, Mapping)
        or not loaded
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())
    ):
        raise ValueError(
            f"{path} holds a {type(loaded).__name__}, not a state dict of tensors (nor a checkpoint with a "
            f"{'/'.join(_CHECKPOINT_KEYS)} key holding one). Save the encoder weights with "
            "torch.save(model.state_dict(), path) and point encoder_weights at that file."
        )
    state = {k.removeprefix("module."): v for k, v in loaded.items()}
    if any(k.startswith("encoder.") for k in state):  # a whole FlexibleUNet: keep its encoder
        state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    return {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}


def _unwrap(network: nn.Module) -> nn.Module:
    """The model inside DataParallel / DistributedDataParallel."""
    inner = getattr(network, "module", None)
    return inner if isinstance(inner, nn.Module) else network


def load_encoder_weights(network: nn.Module, path: str | os.PathLike | None, strict: bool = True) -> nn.Module:
    """Load a local ImageNet-pretrained encoder state dict into ``network.encoder``; never downloads.

    Accepted files: torchvision's ``resnet*.pth`` / ``mobilenet_v2-*.pth`` (classifier ``fc.*``/``classifier.*``
    dropped), a checkpoint dict holding the state dict under ``state_dict``, ``model`` or ``network``, a state dict in
    the encoder's own layout, or a whole FlexibleUNet state dict (its ``encoder.*`` part is used). torchvision's and
    medseg's encoder keys are identical, so no renaming is needed beyond those prefixes. For an ``in_channels`` other
    than 3 the first convolution is adapted with :func:`adapt_input_conv`.

    Args:
        network: a ``FlexibleUNet`` (or any model with an ``encoder`` submodule), possibly wrapped in DataParallel.
        path: the local weights file; None or "" returns ``network`` unchanged (train from scratch).
        strict: if True every encoder tensor must be in the file with the right shape; if False the matching tensors
            are loaded, the others keep their initialisation and are named in a warning.

    Returns:
        ``network`` itself, with the encoder weights loaded.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is not a state dict, ``network`` has no encoder, or (strict) keys or shapes do not
            match the encoder, e.g. weights of another architecture.
    """
    if path is None or str(path) == "":
        return network
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"encoder weights file {path} not found. medseg never downloads weights: copy the file (e.g. torchvision's "
            "~/.cache/torch/hub/checkpoints/resnet34-b627a593.pth, saved by torchvision.models.resnet34("
            'weights="DEFAULT") on a machine with internet) here and point encoder_weights at it, or set '
            'encoder_weights to "" to train from scratch.'
        )
    model = _unwrap(network)
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError(
            f"{type(model).__name__} has no encoder to load {path} into; encoder weights apply to FlexibleUNet only. "
            'Set encoder_weights to "" for this network.'
        )
    backbone = getattr(model, "backbone", type(encoder).__name__)
    source = _read_state_dict(path)
    target = encoder.state_dict()

    first_conv = next((k for k, v in target.items() if k.endswith("weight") and v.ndim >= 3), None)
    if first_conv in source and source[first_conv].shape != target[first_conv].shape:
        wanted, given = target[first_conv].shape, source[first_conv].shape
        if given[1] == 3 and wanted[1] != 3 and given[0] == wanted[0] and given[2:] == wanted[2:]:
            source[first_conv] = adapt_input_conv(source[first_conv], wanted[1])
            logger.info("adapted %s from 3 to %d input channels (see adapt_input_conv)", first_conv, wanted[1])

    missing = [k for k in target if k not in source]
    unexpected = [k for k in source if k not in target]
    mismatched = [k for k in target if k in source and source[k].shape != target[k].shape]
    hint = (
        f"The file holds {describe_layout(source)} weights; the network's '{backbone}' encoder has the "
        f"{describe_layout(target)} layout."
    )
    if "parameter-free shortcuts" in hint and all(".downsample." in k for k in unexpected) and unexpected:
        hint += (
            " MONAI's resnet backbones have no downsample projections, so torchvision's weights do not fit them: "
            f"use backbone 'tv_{backbone}' (torchvision's architecture), or strict=False to load the rest."
        )
    matched = [k for k in target if k in source and k not in mismatched]
    if not matched or (strict and (missing or unexpected or mismatched)):
        problems = []
        if missing:
            problems.append(f"{len(missing)} encoder tensors missing from the file (e.g. {missing[:_SHOW]})")
        if unexpected:
            problems.append(f"{len(unexpected)} tensors in the file that the encoder lacks (e.g. {unexpected[:_SHOW]})")
        if mismatched:
            shapes = [f"{k}: file {tuple(source[k].shape)} vs encoder {tuple(target[k].shape)}" for k in mismatched]
            problems.append(f"{len(mismatched)} tensors of another shape (e.g. {shapes[:_SHOW]})")
        raise ValueError(
            f"{path} does not fit the '{backbone}' encoder: {'; '.join(problems)}. {hint} Point encoder_weights "
            "at weights of the same architecture, or change the network's backbone."
        )
    if missing or unexpected or mismatched:
        logger.warning(
            "loading %s with strict=False: skipped %d encoder tensors absent from the file (%s), %d file tensors the "
            "encoder lacks (%s) and %d of another shape (%s)",
            path,
            len(missing),
            missing[:_SHOW],
            len(unexpected),
            unexpected[:_SHOW],
            len(mismatched),
            mismatched[:_SHOW],
        )
    encoder.load_state_dict({k: source[k] for k in matched}, strict=False)
    logger.info(
        "loaded %d of %d encoder tensors from %s into the '%s' encoder", len(matched), len(target), path, backbone
    )
    return network
