"""Loading a checkpoint into a bundle's network, with a message that says why it does not fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.bundle.errors import BundleInputError

KEPT_CHECKPOINT = "model.pt"  # what a run ships, whichever epoch it holds
KEEP_CHECKPOINT = ("best", "last")
OTHER_CHECKPOINT = {"best": "model_best.pt", "last": "model_final.pt"}  # the epoch a run does not ship


def check_keep_checkpoint(value: Any) -> str:
    """``value`` if it is a valid ``keep_checkpoint`` setting (``"best"`` or ``"last"``).

    Raises:
        BundleInputError: ``--keep_checkpoint 'final': must be best (...) or last (...)``.
    """
    if value not in KEEP_CHECKPOINT:
        raise BundleInputError(
            f"--keep_checkpoint {value!r}: must be best (model.pt = the best validated epoch) or last "
            "(model.pt = the last epoch's weights)"
        )
    return str(value)


def checkpoint_file(keep_checkpoint: str, epoch: str) -> str:
    """The file name of the ``epoch`` (``"best"`` or ``"last"``) weights of a run set to ``keep_checkpoint``:
    ``model.pt`` for the kept one, ``model_best.pt`` or ``model_final.pt`` for the other.

    Configs name their checkpoints with it, e.g.
    ``"key_metric_filename": "$medseg.bundle.checkpoint_file(@keep_checkpoint, 'best')"``.
    """
    return KEPT_CHECKPOINT if check_keep_checkpoint(keep_checkpoint) == epoch else OTHER_CHECKPOINT[epoch]


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` a checkpoint (weights only), ending the run cleanly when it is missing or unreadable.

    Args:
        path: the ``.pt`` file.
        map_location: as for ``torch.load``.

    Returns:
        the loaded object (a state dict or a dict of state dicts).

    Raises:
        BundleInputError: the file is missing or is not a PyTorch checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise BundleInputError(
            f"{path}: checkpoint not found; train the bundle first or pass --ckpt_path PATH_TO_MODEL.pt"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean "not a checkpoint this can read"
        raise BundleInputError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None


def mismatch_summary(network: Any, state_dict: dict) -> str:
    """Describe how ``state_dict`` differs from ``network``'s parameters (empty string when it fits).

    Args:
        network: a ``torch.nn.Module``.
        state_dict: parameter name -> tensor.

    Returns:
        e.g. ``"12 missing keys (model.0.conv.weight, ...); 3 shape mismatches (...)"``.
    """
    own = network.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and hasattr(state_dict[k], "shape") and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for label, names in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if names:
            parts.append(f"{len(names)} {label} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    return "; ".join(parts)


def load_checkpoint_into(network: Any, path: str | Path, bundle: str = "", map_location: Any = "cpu") -> Any:
    """Load a model checkpoint (a state dict, or a dict with a ``model`` entry) into ``network``, strictly.

    Args:
        network: the bundle's network.
        path: the checkpoint file.
        bundle: the bundle's name, for the message.
        map_location: as for ``torch.load``.

    Returns:
        ``network``, so a config can write ``$medseg.bundle.load_checkpoint_into(@network, @ckpt_path)``.

    Raises:
        BundleInputError: the checkpoint is missing, unreadable, or from another network.
    """
    checkpoint = read_checkpoint(path, map_location)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    problem = mismatch_summary(network, state) if isinstance(state, dict) else "not a state dict"
    if problem:
        raise BundleInputError(fit_message(path, network, bundle, problem))
    network.load_state_dict(state)
    return network


def fit_message(path: str | Path, network: Any, bundle: str, problem: str) -> str:
    """The message for a checkpoint that does not fit a bundle's network."""
    where = f"bundle {bundle!r}'s network" if bundle else "this bundle's network"
    return (
        f"{path}: checkpoint does not fit {where} ({type(network).__name__}): {problem}. "
        "It was saved from another network or with other network_def settings; use a checkpoint of this bundle."
    )


class StateDictWithout:
    """A network as ``CheckpointSaver`` sees it, leaving out parameters only training uses.

    DynUNet's deep supervision heads are used only in training and cannot be TorchScript-ed; saving the
    best checkpoint without them gives a ``model.pt`` that the inference network (built with
    ``deep_supervision=False``), ``ckpt_export`` and evaluation load strictly.

    Args:
        network: the network (a ``DistributedDataParallel`` wrapper is looked through).
        drop: regular expression; parameters whose name matches it are left out.
    """

    def __init__(self, network: Any, drop: str) -> None:
        import re

        self.network = getattr(network, "module", network)
        self.drop = re.compile(drop)

    def state_dict(self) -> dict:
        """The network's state dict without the dropped parameters."""
        from collections import OrderedDict

        return OrderedDict((k, v) for k, v in self.network.state_dict().items() if not self.drop.search(k))

    def load_state_dict(self, state: dict, strict: bool = True) -> Any:
        """Load ``state``, which lacks the dropped parameters (they keep their values)."""
        own = set(self.network.state_dict())
        missing = {k for k in own if not self.drop.search(k)} - set(state)
        if strict and missing:
            raise KeyError(f"missing keys {sorted(missing)[:3]}")
        return self.network.load_state_dict(state, strict=False)

    def remove_dropped(self, network: Any) -> Any:
        """Remove from ``network`` (a copy of the viewed network) the submodules whose names the dropped pattern
        matches, so that its own state dict is the view's: the network a checkpoint of this view describes, which
        loads it strictly and no longer computes the training-only outputs (DynUNet's skip layers skip a
        ``super_head`` that is None).

        Returns:
            ``network``, changed in place.
        """
        # every name of a shared module (a DynUNet super head is also one of its deep_supervision_heads)
        modules = network.named_modules(remove_duplicate=False)
        names = [name for name, _ in modules if name and self.drop.search(name)]
        for name in names:
            parent_name, _, attribute = name.rpartition(".")
            if any(parent_name == other or parent_name.startswith(other + ".") for other in names):
                continue  # inside a removed module
            setattr(network.get_submodule(parent_name), attribute, None)
        return network
