"""An exponential moving average of the trained network's weights, validated and saved in the network's place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.bundle.errors import BundleInputError
from medseg.bundle.overrides import check_fraction

if TYPE_CHECKING:
    import torch
    from ignite.engine import Engine


class WeightAverage:
    """Keep an exponential moving average (EMA) of a network's weights while it trains.

    On small datasets the weights after any one step are noisy, and so is the validation score that picks the
    checkpoint. With ``momentum`` set, :attr:`network` is an averaged copy of the trained network that ignite's
    ``EMAHandler`` updates after every iteration, buffers (batch-norm statistics) included; the bundles validate,
    choose the checkpoint and post-processing, and save with it, so what a run keeps averages its last
    ``~1/momentum`` iterations. With ``momentum=None`` averaging is off: :attr:`network` is the trained network
    itself and :meth:`attach` does nothing.

    Args:
        network: the network being trained (for ``DistributedDataParallel``, its ``module``).
        momentum: weight of the newest weights in each update, in (0, 1); ``None`` turns averaging off.
        warmup_iters: iterations over which the momentum falls linearly from ``warmup_momentum`` to ``momentum``,
            so that the average leaves the random initial weights behind early in training.
        warmup_momentum: the momentum of the first iteration, in (0, 1).

    Raises:
        BundleInputError: a momentum outside (0, 1) or a negative ``warmup_iters``, naming the config id.
    """

    def __init__(self, network: torch.nn.Module, momentum: float | None = None, warmup_iters: int = 100,
                 warmup_momentum: float = 0.1) -> None:
        self.trained = network
        self.ema = None
        if momentum is None:
            return
        check_fraction("--weight_average_momentum", momentum, 0.01)
        check_fraction("--weight_average#warmup_momentum", warmup_momentum, 0.1)
        if isinstance(warmup_iters, bool) or not isinstance(warmup_iters, int) or warmup_iters < 0:
            raise BundleInputError(f"--weight_average#warmup_iters {warmup_iters!r}: must be a whole number of "
                                   "iterations, 0 or more, e.g. --weight_average#warmup_iters 100")
        from ignite.handlers import EMAHandler

        warmup = {"momentum_warmup": warmup_momentum, "warmup_iters": warmup_iters} if warmup_iters else {}
        self.ema = EMAHandler(network, momentum=momentum, handle_buffers="update", **warmup)

    @property
    def network(self) -> torch.nn.Module:
        """The weights to validate and save: the average when averaging is on, else the trained network."""
        return self.trained if self.ema is None else self.ema.ema_model

    def attach(self, engine: Engine) -> None:
        """Update the average after every iteration of ``engine`` (the trainer); nothing when averaging is off."""
        if self.ema is not None:
            self.ema.attach(engine)  # ignite's warm-up schedules engine.state.ema_momentum, whatever the name
