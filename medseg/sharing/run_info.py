"""What ``medseg package --run`` points at: a checkpoint file, or an MLflow run whose best checkpoint it logged.

The MLflow side lives in :mod:`medseg.tracking.readback` (every MLflow call is in ``medseg.tracking``); this module
keeps its names for the sharing code. A model URI (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``) resolves with
:func:`medseg.tracking.models.resolve_model_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

from medseg.sharing.errors import SharingError
from medseg.tracking.readback import CHECKPOINT_SUFFIXES, RunInfo, _pick_checkpoint, fetch_run, resolve_run

__all__ = ["CHECKPOINT_SUFFIXES", "RunInfo", "_pick_checkpoint", "fetch_run", "resolve_run", "state_dict_of"]


def state_dict_of(checkpoint: Path) -> dict:
    """The network weights in a checkpoint, loaded with ``weights_only=True``.

    Accepts a bare state dict or a MONAI ``CheckpointSaver`` file (``{"model": ..., "optimizer": ...}``).

    Raises:
        SharingError: the file is not a weights-only checkpoint or holds no network weights.
    """
    import torch

    try:
        data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-weights objects
        raise SharingError(
            checkpoint,
            f"cannot be loaded with weights_only=True ({type(exc).__name__}: {exc})",
            "pass a state dict or a MONAI CheckpointSaver file",
        ) from exc
    if isinstance(data, dict):
        for key in ("model", "network", "net", "state_dict"):
            if isinstance(data.get(key), dict):
                return data[key]
        if data and all(isinstance(v, torch.Tensor) for v in data.values()):
            return data
    raise SharingError(checkpoint, "holds no network state dict", "pass the checkpoint written by training")
