"""Progressive resizing ("pyramid transfer"): train at a small size, then continue at larger sizes, each stage
starting from the best weights of the one before.

:class:`InitialWeights` (``bundles/strategies/init_weights.json``, ``--init_weights PATH``) loads a checkpoint into the
trainer's network when the trainer is built; ``medseg progressive`` runs the stages with it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.strategies.errors import StrategyError

logger = logging.getLogger(__name__)
BEST_CHECKPOINT = "model.pt"  # the bundles' key-metric CheckpointSaver file name
MIN_SIZE = 16


def check_sizes(sizes: Sequence[int]) -> list[int]:
    """The stage sizes, checked: at least two, increasing, each at least ``MIN_SIZE`` pixels.

    Raises:
        StrategyError: otherwise.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
        raise StrategyError(f"progressive resizing needs at least two --sizes (got {sizes}), e.g. --sizes 128 256")
    if any(s < MIN_SIZE for s in sizes) or any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise StrategyError(f"--sizes must increase and be >= {MIN_SIZE} pixels (got {sizes}), e.g. 128 256 512")
    return sizes


def best_checkpoint(stage_dir: str | Path) -> Path:
    """The best checkpoint a stage wrote (``model.pt`` in its output folder).

    Raises:
        StrategyError: the stage wrote none.
    """
    path = Path(stage_dir) / BEST_CHECKPOINT
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in Path(stage_dir).glob("*.pt"))) or "none"
        raise StrategyError(
            f"{path}: the stage wrote no best checkpoint (found: {found}); the bundle's validate#handlers need a "
            f"CheckpointSaver with save_key_metric=True and key_metric_filename='{BEST_CHECKPOINT}'"
        )
    return path


class InitialWeights:
    """Ignite handler: load a model checkpoint into the trainer's network when the trainer is built.

    Args:
        path: a checkpoint (a state dict, or a dict with a ``model`` entry) of the same network.
        bundle: the bundle's name, for the message when it does not fit.
        network: the network (``@network``); None takes the trainer's when it starts.

    Raises:
        BundleInputError: the checkpoint is missing, unreadable or of another network.
    """

    def __init__(self, path: str | None, bundle: str = "", network: Any = None) -> None:
        if not path:
            raise StrategyError("init_weights.json needs a checkpoint: pass --init_weights PATH_TO_MODEL.pt")
        self.path, self.bundle, self.network = Path(path), bundle, network

    def attach(self, engine: Any) -> None:
        """Load the weights now (given ``network``) or when the trainer starts, before any optimizer step."""
        from ignite.engine import Events

        if self.network is not None:
            self.load(self.network)
        else:
            engine.add_event_handler(Events.STARTED, lambda e: self.load(e.network))

    def load(self, network: Any) -> None:
        """Load the checkpoint into ``network`` (strictly: a checkpoint of another network is an error)."""
        from medseg.bundle import load_checkpoint_into

        load_checkpoint_into(network, self.path, self.bundle)
        logger.info("initial weights from %s", self.path)
