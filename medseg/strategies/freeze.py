"""Frozen encoder ("off-the-shelf"), two learning rates ("fine-tune") and the two-stage unfreeze recipe.

Freezing sets ``requires_grad=False``: the bundle's optimizer can keep every parameter (a parameter without a
gradient is skipped by torch's optimizers, weight decay included). A frozen part's batch-norm layers are also held
in eval mode, so their running statistics stay as they were: MONAI's trainer calls ``network.train()`` every
iteration, so the layer's own ``train`` is replaced by one that keeps it in eval mode.

Layer names are parameter-name prefixes (``encoder`` matches ``encoder.conv1.weight``, ...) or ``fnmatch`` patterns
(``encoder.layer[12].*``); a name that matches no parameter is an error, before any training.
"""

from __future__ import annotations

import fnmatch
import logging
import types
from collections.abc import Sequence
from typing import Any

from medseg.strategies.errors import StrategyError

logger = logging.getLogger(__name__)
ENCODER = "encoder"  # FlexibleUNet's encoder module name


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or name.startswith(pattern.rstrip(".") + ".") or fnmatch.fnmatchcase(name, pattern)


def _top_level_names(network: Any) -> str:
    names = sorted({n.split(".")[0] for n, _ in network.named_parameters()})
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")


def matching_parameters(network: Any, layers: str | Sequence[str]) -> list[str]:
    """The parameter names of ``network`` that ``layers`` select.

    Args:
        network: a ``torch.nn.Module``.
        layers: parameter-name prefixes or ``fnmatch`` patterns.

    Returns:
        the matching parameter names, in the network's order.

    Raises:
        StrategyError: a name matches no parameter (the message lists the network's top-level names).
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise StrategyError('no layer names given to freeze; set freeze_layers, e.g. ["encoder"]')
    names = [n for n, _ in network.named_parameters()]
    for pattern in layers:
        if not any(_matches(n, pattern) for n in names):
            raise StrategyError(
                f"frozen-layer name {pattern!r} matches no parameter of {type(network).__name__}; its parameters "
                f"start with: {_top_level_names(network)}. Set freeze_layers (--freeze_layers \"['NAME']\") to "
                "one of them (FlexibleUNet bundles: 'encoder')"
            )
    return [n for n in names if any(_matches(n, p) for p in layers)]


def _eval_only(self: Any, mode: bool = True) -> Any:
    """A ``Module.train`` that keeps the module in eval mode (running statistics unchanged)."""
    import torch

    return torch.nn.Module.train(self, False)


def hold_in_eval(module: Any) -> None:
    """Keep ``module`` in eval mode whatever ``train()`` its parent calls (undo with :func:`release_eval`)."""
    module.train = types.MethodType(_eval_only, module)
    module.eval()


def release_eval(module: Any) -> None:
    """Let ``module`` follow ``train()``/``eval()`` again."""
    module.__dict__.pop("train", None)


def _norm_modules(network: Any, prefix_filter: Any = None) -> list[tuple[str, Any]]:
    import torch

    kinds = (torch.nn.modules.batchnorm._BatchNorm,)
    return [
        (name, m)
        for name, m in network.named_modules()
        if isinstance(m, kinds) and (prefix_filter is None or prefix_filter(name))
    ]


def freeze(network: Any, layers: str | Sequence[str] = ENCODER) -> list[str]:
    """Freeze the parameters ``layers`` select, and hold their batch-norm layers in eval mode.

    Args:
        network: a ``torch.nn.Module``.
        layers: parameter-name prefixes or patterns (see the module docstring).

    Returns:
        the frozen parameter names.

    Raises:
        StrategyError: a name matches no parameter.
    """
    names = set(matching_parameters(network, layers))
    for name, parameter in network.named_parameters():
        if name in names:
            parameter.requires_grad_(False)
    patterns = [layers] if isinstance(layers, str) else list(layers)
    for _, module in _norm_modules(network, lambda n: any(_matches(n + ".weight", p) for p in patterns)):
        hold_in_eval(module)
    logger.info("froze %d parameters (%s)", len(names), ", ".join(patterns))
    return sorted(names)


def unfreeze(network: Any, keep_batchnorm_frozen: bool = True) -> None:
    """Make every parameter trainable again; with ``keep_batchnorm_frozen`` every batch-norm layer stays frozen
    (weights and running statistics), as in the second stage of the two-stage recipe.

    Args:
        network: a ``torch.nn.Module``.
        keep_batchnorm_frozen: hold all batch-norm layers frozen and in eval mode.
    """
    for module in network.modules():
        release_eval(module)
    for parameter in network.parameters():
        parameter.requires_grad_(True)
    if keep_batchnorm_frozen:
        for _, module in _norm_modules(network):
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            hold_in_eval(module)


def encoder_decoder_param_groups(
    network: Any, encoder_lr: float, decoder_lr: float, encoder: str | Sequence[str] = ENCODER
) -> list[dict]:
    """Optimizer parameter groups with one learning rate for the encoder and another for the rest.

    Meant for ``"optimizer#params"`` in an override file (``bundles/strategies/finetune_two_lr.json``).

    Args:
        network: the bundle's network.
        encoder_lr: learning rate of the encoder's parameters (usually lower: they start pretrained).
        decoder_lr: learning rate of every other parameter.
        encoder: parameter-name prefixes or patterns of the encoder.

    Returns:
        ``[{"params": encoder, "lr": encoder_lr, "name": "encoder"}, {"params": rest, "lr": decoder_lr, ...}]``.

    Raises:
        StrategyError: ``encoder`` matches no parameter, or matches all of them.
    """
    encoder_names = set(matching_parameters(network, encoder))
    encoder_params = [p for n, p in network.named_parameters() if n in encoder_names]
    decoder_params = [p for n, p in network.named_parameters() if n not in encoder_names]
    if not decoder_params:
        raise StrategyError(
            f"{encoder!r} matches every parameter of {type(network).__name__}; nothing is left for "
            "the decoder's learning rate"
        )
    return [
        {"params": encoder_params, "lr": float(encoder_lr), "name": "encoder"},
        {"params": decoder_params, "lr": float(decoder_lr), "name": "decoder"},
    ]


class FreezeLayers:
    """Ignite handler: freeze layers for training, optionally unfreezing everything but batch norm later.

    - ``unfreeze_epoch=None``: the layers stay frozen for the whole run (frozen encoder, "off-the-shelf").
    - ``unfreeze_epoch=N``: the two-stage recipe: epochs 1..N train with ``layers`` frozen; from epoch N+1 every
      parameter trains except the batch-norm layers, whose weights and running statistics stay frozen.

    Given ``network`` (the override files pass ``@network``), the layers are frozen when the trainer is built, so a
    bad name stops the run before the data is loaded; without it, when the trainer starts (MONAI attaches handlers
    before the trainer has its ``network`` attribute). A resumed run past ``unfreeze_epoch`` starts unfrozen.

    Args:
        layers: parameter-name prefixes or patterns to freeze (FlexibleUNet: ``encoder``).
        unfreeze_epoch: last epoch with the layers frozen, or None to keep them frozen.
        keep_batchnorm_frozen: in the second stage, keep batch-norm layers frozen.
        network: the network; None takes the trainer's.
    """

    def __init__(
        self,
        layers: str | Sequence[str] = ENCODER,
        unfreeze_epoch: int | None = None,
        keep_batchnorm_frozen: bool = True,
        network: Any = None,
    ) -> None:
        if unfreeze_epoch is not None and int(unfreeze_epoch) < 0:
            raise StrategyError(f"unfreeze_epoch must be >= 0 (got {unfreeze_epoch})")
        self.layers = layers
        self.unfreeze_epoch = None if unfreeze_epoch is None else int(unfreeze_epoch)
        self.keep_batchnorm_frozen = keep_batchnorm_frozen
        self.network = network
        self.frozen: list[str] = []
        self.unfrozen = False

    def attach(self, engine: Any) -> None:
        """Freeze now (or at ``STARTED``); with ``unfreeze_epoch``, unfreeze when an epoch after it starts."""
        from ignite.engine import Events

        if self.network is not None:
            self.frozen = freeze(self.network, self.layers)
        else:
            engine.add_event_handler(Events.STARTED, self.started)
        if self.unfreeze_epoch is not None:
            engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)

    def started(self, engine: Any) -> None:
        """Freeze the trainer's network (when no ``network`` was given)."""
        self.network = engine.network
        self.frozen = freeze(self.network, self.layers)

    def epoch_started(self, engine: Any) -> None:
        """Unfreeze once the trainer is past ``unfreeze_epoch``."""
        if not self.unfrozen and engine.state.epoch > self.unfreeze_epoch:
            unfreeze(self.network, self.keep_batchnorm_frozen)
            self.unfrozen = True
            logger.info(
                "epoch %d: unfroze %s%s",
                engine.state.epoch,
                self.layers,
                " (batch norm kept frozen)" if self.keep_batchnorm_frozen else "",
            )
