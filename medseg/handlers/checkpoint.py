"""``CheckpointLoader`` that says which bundle and network a checkpoint does not fit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monai.handlers import CheckpointLoader

from medseg.bundle.checkpoint import fit_message, mismatch_summary, read_checkpoint
from medseg.bundle.errors import BundleInputError

if TYPE_CHECKING:
    from ignite.engine import Engine


class BundleCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader``, ending the run with a clear message for a missing or foreign checkpoint.

    Args:
        load_path: the checkpoint file.
        load_dict: name -> object to restore (e.g. ``{"model": "@network"}``).
        bundle: the bundle's name, for the message.
        kwargs: the other arguments of ``monai.handlers.CheckpointLoader``.
    """

    def __init__(self, load_path: str, load_dict: dict, bundle: str = "", **kwargs: Any) -> None:
        super().__init__(load_path=load_path, load_dict=load_dict, **kwargs)
        self.bundle = bundle

    def __call__(self, engine: Engine) -> None:
        import torch

        checkpoint = read_checkpoint(self.load_path, self.map_location)
        if self.strict:
            key, obj = next(iter(self.load_dict.items()))
            if isinstance(obj, torch.nn.Module) and isinstance(checkpoint, dict):
                state = checkpoint.get(key, checkpoint) if len(self.load_dict) == 1 else checkpoint.get(key, {})
                problem = mismatch_summary(obj, state)
                if problem:
                    raise BundleInputError(fit_message(self.load_path, obj, self.bundle, problem))
        super().__call__(engine)
