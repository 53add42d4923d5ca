"""Choose the post-processing on the validation predictions of the best epoch, as nnU-Net does after training."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ignite.engine import Engine

logger = logging.getLogger(__name__)


class ChoosePostprocessing:
    """Attach to a training run's evaluator; keep ``<output_dir>/postprocessing.json`` in step with ``model.pt``.

    Each validation epoch keeps the predicted and true label maps (``uint8``, argmax of the evaluator's one-hot
    ``pred`` and ``label``). When the key metric improves (the epoch whose weights ``CheckpointSaver`` writes as
    ``model.pt``), :func:`medseg.postprocessing.choose_postprocessing` decides per foreground class whether
    keep-largest-component and hole filling raise the scores, and the decision is written beside the checkpoint,
    where evaluation and inference pick it up (:func:`medseg.postprocessing.decision_beside`).

    Args:
        output_dir: the run's output folder (where ``model.pt`` is).
        num_classes: label values, background included.
        metrics: scores that must not drop (``"dice"``, ``"thresholded_jaccard"``).
    """

    def __init__(self, output_dir: str, num_classes: int, metrics: Sequence[str] = ("dice",)) -> None:
        self.output_dir = Path(output_dir)
        self.num_classes = int(num_classes)
        self.metrics = tuple(metrics)
        self._epoch: list[tuple[np.ndarray, np.ndarray]] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self._epoch.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._choose_if_best)

    @staticmethod
    def _index_map(value: Any) -> np.ndarray:
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        return (array.argmax(0) if array.shape[0] > 1 else array[0]).astype(np.uint8)

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        for item in output if isinstance(output, (list, tuple)) else [output]:
            self._epoch.append((self._index_map(item["pred"]), self._index_map(item["label"])))

    def _choose_if_best(self, engine: Engine) -> None:
        from medseg.postprocessing import DECISION_FILE, choose_postprocessing

        if getattr(engine.state, "best_metric_epoch", -1) != engine.state.epoch or not self._epoch:
            return
        preds, labels = zip(*self._epoch, strict=True)
        decision = choose_postprocessing(list(preds), list(labels), self.num_classes, metrics=self.metrics)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / DECISION_FILE
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_text(json.dumps(decision, indent=2) + "\n")
        tmp.replace(path)
        kept = {c: [op for op, on in ops.items() if on] for c, ops in decision["classes"].items()}
        logger.debug("post-processing chosen on %d validation cases: %s (%s)", len(preds), kept, path)
