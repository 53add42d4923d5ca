"""Choose the post-processing on the validation predictions of the kept checkpoint's epoch, as nnU-Net does."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medseg.postprocessing import index_map

if TYPE_CHECKING:
    from ignite.engine import Engine

logger = logging.getLogger(__name__)


def _rank_zero() -> bool:
    """Whether this process writes the run's files (not a rank > 0 of a distributed run)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized() and dist.get_rank() > 0)


class ChoosePostprocessing:
    """Attach to a training run's evaluator; keep ``<output_dir>/postprocessing.json`` in step with ``model.pt``.

    Each validation epoch keeps the predicted and true label maps (``uint8``, argmax of the evaluator's one-hot
    ``pred`` and ``label``). :func:`medseg.postprocessing.choose_postprocessing` then decides per foreground class
    whether keep-largest-component and hole filling raise the scores, on the predictions of the epoch whose
    weights become ``model.pt``, and writes the decision beside the checkpoint, where evaluation and inference
    pick it up (:func:`medseg.postprocessing.decision_beside`):

    - ``keep_checkpoint="best"`` (the default): ``model.pt`` is the best validated epoch (``CheckpointSaver``'s key
      metric), so its decision is made when the key metric improves; the last epoch's weights (``model_final.pt``)
      get one of their own, ``model_final.postprocessing.json``, made from the last validation when training ends;
    - ``keep_checkpoint="last"``: the other way round, ``model.pt`` is the last epoch's weights (nnU-Net's
      ``checkpoint_final``) with ``postprocessing.json`` made when training ends, and ``model_best.pt`` has
      ``model_best.postprocessing.json``.

    The last-epoch decision is made by :class:`ChooseAtTrainingEnd`, a handler for the trainer's list (before
    ``CheckpointSaver`` and the MLflow handler, so that the decision exists when they run); without it only the
    best epoch's decision is made. Ranks other than 0 of a distributed run choose nothing.

    Args:
        output_dir: the run's output folder (where ``model.pt`` is).
        num_classes: label values, background included.
        metrics: scores that must not drop (``"dice"``, ``"thresholded_jaccard"``).
        keep_checkpoint: ``"best"`` or ``"last"``, the bundle setting of the same name.
    """

    def __init__(
        self, output_dir: str, num_classes: int, metrics: Sequence[str] = ("dice",), keep_checkpoint: str = "best"
    ) -> None:
        from medseg.bundle.checkpoint import check_keep_checkpoint

        self.output_dir = Path(output_dir)
        self.num_classes = int(num_classes)
        self.metrics = tuple(metrics)
        self.keep_checkpoint = check_keep_checkpoint(keep_checkpoint)
        self._epoch: list[tuple[np.ndarray, np.ndarray]] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        if not _rank_zero():
            return
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self._epoch.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._choose_if_best)

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        for item in output if isinstance(output, (list, tuple)) else [output]:
            self._epoch.append((index_map(item["pred"]), index_map(item["label"])))

    def _choose_if_best(self, engine: Engine) -> None:
        if getattr(engine.state, "best_metric_epoch", -1) == engine.state.epoch:
            self._write("best")

    def choose_last(self, trainer: Engine | None = None) -> None:
        """Write the decision of the last validated epoch (what :class:`ChooseAtTrainingEnd` calls)."""
        self._write("last")  # the maps of the last validation, kept until the next one starts

    def _write(self, epoch: str) -> None:
        from medseg.bundle.checkpoint import checkpoint_file
        from medseg.postprocessing import choose_postprocessing, decision_file, write_decision

        name = decision_file(checkpoint_file(self.keep_checkpoint, epoch))
        if not self._epoch:
            return
        preds, labels = zip(*self._epoch, strict=True)
        decision = choose_postprocessing(list(preds), list(labels), self.num_classes, metrics=self.metrics)
        path = write_decision(decision, self.output_dir / name)
        kept = {c: [op for op, on in ops.items() if on] for c, ops in decision["classes"].items()}
        logger.debug("post-processing chosen on %d validation cases: %s (%s)", len(preds), kept, path)


class ChooseAtTrainingEnd:
    """Attach to the trainer: when training ends (finished, out of time or stopped early), ``chooser`` writes the
    post-processing decision of the last validated epoch, the one for the last epoch's weights.

    Configs put it in ``train#handlers`` before ``CheckpointSaver`` and the MLflow handler::

        {"_target_": "medseg.handlers.ChooseAtTrainingEnd", "chooser": "@validate#choose_postprocessing"}

    Args:
        chooser: the :class:`ChoosePostprocessing` attached to the trainer's evaluator.
    """

    def __init__(self, chooser: ChoosePostprocessing) -> None:
        self.chooser = chooser

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        if _rank_zero():
            engine.add_event_handler(Events.COMPLETED, self.chooser.choose_last)
