"""The learning-rate range test: MONAI's ``LearningRateFinder`` on a bundle's network, loss and training data.

The learning rate grows exponentially from ``start_lr`` to ``end_lr`` over ``num_iter`` batches (by default one pass
over the training data); the suggestion is the learning rate where the smoothed loss falls fastest (steepest
descent, ``LearningRateFinder.get_steepest_gradient``). The network and optimizer are returned to their state before
the test.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medseg.strategies.errors import StrategyError

MIN_POINTS = 5


@dataclass
class LrFinderResult:
    """What the range test found: the curve and the suggested learning rate."""

    suggested_lr: float
    suggested_loss: float
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    start_lr: float = 0.0
    end_lr: float = 0.0
    num_iter: int = 0


def find_learning_rate(
    network: Any,
    optimizer: Any,
    loss_function: Any,
    data_loader: Any,
    device: Any = None,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    num_iter: int | None = None,
    image_key: str = "image",
    label_key: str = "label",
) -> LrFinderResult:
    """Run the range test and return the loss-vs-lr curve with the steepest-descent suggestion.

    Args:
        network: the bundle's network.
        optimizer: its optimizer (its state is restored afterwards).
        loss_function: the bundle's loss.
        data_loader: the training data loader (dict batches).
        device: where to run.
        start_lr: first learning rate.
        end_lr: last learning rate.
        num_iter: batches to run; None is one pass over ``data_loader`` (the loader is cycled when larger).
        image_key: batch key of the images.
        label_key: batch key of the labels.

    Returns:
        the result.

    Raises:
        StrategyError: a bad range, too few batches for a curve, or a loss that diverged at once.
    """
    from monai.optimizers import LearningRateFinder

    if not 0 < start_lr < end_lr:
        raise StrategyError(f"need 0 < start_lr < end_lr (got {start_lr}, {end_lr})")
    num_iter = len(data_loader) if num_iter is None else int(num_iter)
    if num_iter < MIN_POINTS:
        raise StrategyError(
            f"the range test would run {num_iter} batches (one pass over the training data); it needs at least "
            f"{MIN_POINTS} for a curve: pass --num_iter 50 (the data is cycled) or a smaller batch size"
        )
    finder = LearningRateFinder(network, optimizer, loss_function, device=device, verbose=False)
    finder.range_test(
        data_loader,
        image_extractor=lambda batch: batch[image_key],
        label_extractor=lambda batch: batch[label_key],
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
    )
    lrs, losses = finder.get_lrs_and_losses()
    if len(lrs) < 2:
        raise StrategyError(
            f"the loss diverged after {len(finder.history['lr'])} batches, before a curve could be drawn; "
            "lower --start_lr"
        )
    suggested_lr, suggested_loss = finder.get_steepest_gradient()
    return LrFinderResult(
        suggested_lr=float(suggested_lr),
        suggested_loss=float(suggested_loss),
        lrs=[float(x) for x in lrs],
        losses=[float(x) for x in losses],
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
    )


def save_result(result: LrFinderResult, folder: str | Path, title: str = "") -> tuple[Path, Path]:
    """Write ``lr_find.png`` (loss against learning rate, log scale, the suggestion marked) and ``lr_find.json``.

    Returns:
        the plot and the JSON file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot, data = folder / "lr_find.png", folder / "lr_find.json"
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(result.lrs, result.losses, label="loss (smoothed)")
    axes.scatter(
        [result.suggested_lr],
        [result.suggested_loss],
        color="red",
        zorder=3,
        label=f"steepest descent: {result.suggested_lr:.2e}",
    )
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("loss")
    axes.set_title(title or "learning-rate range test")
    axes.legend()
    figure.tight_layout()
    figure.savefig(plot, dpi=100)
    plt.close(figure)
    values = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in asdict(result).items()}
    data.write_text(json.dumps(values, indent=1))
    return plot, data
