"""One line per epoch and a closing summary: the console of a training run, at INFO.

:class:`TrainingConsole` goes on the trainer, after the ``ValidationHandler`` (it reads the metrics that
validation just computed). Per epoch it logs one compact line::

    epoch 3/20  loss 0.4120  lr 9.50e-04  val_loss 0.3880  val_mean_dice 0.8120*  dice[lv 0.910 ...]  12.1s

(``*``: a new best key metric; metrics that repeat another, such as ``val_dice`` = ``val_mean_dice``, are left
out). When training ends it logs the summary: best metric and its epoch, the checkpoint, the MLflow run and the
``mlflow ui`` command that opens it, and the time taken.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("medseg.train")


def _loss_of(output: Any) -> float | None:
    """The loss of one iteration's output (a dict, or a list of per-item dicts)."""
    if isinstance(output, list) and output:
        output = output[0]
    if isinstance(output, dict) and "loss" in output:
        loss = output["loss"]
        try:
            return float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        except (TypeError, ValueError):
            return None
    return None


def compact_metrics(metrics: dict[str, Any], key_metric: str | None = None, new_best: bool = False) -> str:
    """The metrics of one validation as ``name value`` pairs, per-class values grouped, duplicates left out.

    A metric ``val_X`` is left out when ``val_mean_X`` holds the same mean (medseg's per-class handlers log their
    mean under their own name too); per-class metrics ``val_X_<label>`` are shown as ``X[label value ...]``.
    """
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    means = {k for k in scalars if f"{k.replace('val_', 'val_mean_', 1)}" in scalars and k.startswith("val_")
             and not k.startswith("val_mean_")}
    per_class: dict[str, list[str]] = {}
    for base in means:
        for name in sorted(scalars):
            if name.startswith(f"{base}_"):
                per_class.setdefault(base.removeprefix("val_"), []).append(
                    f"{name.removeprefix(base + '_')} {scalars[name]:.3f}"
                )
    grouped = {name for base in means for name in scalars if name.startswith(f"{base}_")}
    parts = []
    for name in sorted(scalars, key=lambda n: (n != "val_loss", n != key_metric, n)):
        if name in means or name in grouped:
            continue
        mark = "*" if new_best and name == key_metric else ""
        parts.append(f"{name} {scalars[name]:.4f}{mark}")
    parts += [f"{base}[{' '.join(values)}]" for base, values in sorted(per_class.items())]
    return "  ".join(parts)


class TrainingConsole:
    """Ignite handler on the trainer: the epoch line and the closing summary (see the module docstring).

    Args:
        validator: the evaluator whose metrics the epoch line shows (``@validate#evaluator``); None for none.
        output_dir: the run folder (the summary names its best checkpoint).
        checkpoint_name: file name of the kept checkpoint in ``output_dir``.
        keep_checkpoint: which epoch that checkpoint holds, ``"best"`` (validated) or ``"last"`` (the bundle setting).
        weight_averaged: the checkpoints hold the weight average (``weight_average_momentum`` set), said in the summary.
        validation_trained_on: the validation cases were trained on too (``train_on_validation``): the summary says
            that the validation scores are not held-out scores.
    """

    def __init__(
        self,
        validator: Any = None,
        output_dir: str | None = None,
        checkpoint_name: str = "model.pt",
        keep_checkpoint: str = "best",
        weight_averaged: bool = False,
        validation_trained_on: bool = False,
    ) -> None:
        self.validator = validator
        self.output_dir = Path(output_dir) if output_dir else None
        self.checkpoint_name = checkpoint_name
        self.keep_checkpoint = keep_checkpoint
        self.weight_averaged = weight_averaged
        self.validation_trained_on = validation_trained_on
        self.started = 0.0
        self.epoch_started = 0.0
        self.losses: list[float] = []
        self.last_best_epoch = -1

    def attach(self, engine: Any) -> None:
        """Register on the trainer's iteration, epoch and end events."""
        from ignite.engine import Events

        self.trainer = engine
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Any) -> None:
        self.started = time.perf_counter()
        self.last_best_epoch = getattr(self.validator.state, "best_metric_epoch", -1) if self.validator else -1

    def _epoch_started(self, engine: Any) -> None:
        self.epoch_started = time.perf_counter()
        self.losses = []

    def _iteration_completed(self, engine: Any) -> None:
        loss = _loss_of(engine.state.output)
        if loss is not None:
            self.losses.append(loss)

    def epoch_line(self, engine: Any) -> str:
        """The line of the epoch that just ended."""
        state = engine.state
        parts = [f"epoch {state.epoch}/{state.max_epochs}"]
        if self.losses:
            parts.append(f"loss {sum(self.losses) / len(self.losses):.4f}")
        optimizer = getattr(engine, "optimizer", None)
        if optimizer is not None and getattr(optimizer, "param_groups", None):
            parts.append(f"lr {optimizer.param_groups[0]['lr']:.2e}")
        validated = self.validator is not None and self.validator.state.epoch == state.epoch
        if validated and self.validator.state.metrics:
            vstate = self.validator.state
            new_best = vstate.best_metric_epoch == state.epoch
            parts.append(compact_metrics(vstate.metrics, getattr(vstate, "key_metric_name", None), new_best))
        parts.append(f"{time.perf_counter() - self.epoch_started:.1f}s")
        return "  ".join(p for p in parts if p)

    def _epoch_completed(self, engine: Any) -> None:
        logger.info(self.epoch_line(engine))

    def summary(self, engine: Any) -> list[str]:
        """The closing lines: best metric and epoch, checkpoint, MLflow run, time taken."""
        lines = [f"training finished: {engine.state.epoch} epoch(s) in {_duration(time.perf_counter() - self.started)}"]
        vstate = getattr(self.validator, "state", None)
        if vstate is not None and getattr(vstate, "best_metric_epoch", -1) not in (-1, None):
            name = getattr(vstate, "key_metric_name", None) or "key metric"
            lines.append(f"  best {name} {vstate.best_metric:.4f} at epoch {vstate.best_metric_epoch}")
        if self.validation_trained_on:
            lines.append("  the validation cases were trained on (train_on_validation): their scores are not held-out "
                         "scores; score the model on cases it has not seen (evaluate.json --evaluate_section testing)")
        if self.output_dir is not None:
            best = self.output_dir / self.checkpoint_name
            # a kept last epoch is written by the final CheckpointSaver at this same event, after this handler
            shown = best if best.is_file() or self.keep_checkpoint == "last" else self.output_dir
            held = "the last epoch's weights" if self.keep_checkpoint == "last" else "the best validated epoch"
            held += ", averaged over iterations" if self.weight_averaged else ""
            lines.append(f"  checkpoint: {shown} ({held})")
        lines += self._mlflow_lines(engine)
        return lines

    def _mlflow_lines(self, engine: Any) -> list[str]:
        from medseg.handlers.engine_handlers import attached_handlers

        for handler in attached_handlers(engine):
            recorder = getattr(handler, "recorder", None)  # medseg's MLflowTracking: the run it records
            run_id = getattr(recorder, "run_id", None)
            if run_id is None or not hasattr(handler, "experiment_name"):
                continue
            uri = str(getattr(recorder, "tracking_uri", None) or "")
            experiment_id = getattr(recorder, "experiment_id", None)
            lines = [f"  MLflow: run {handler.run_name} ({run_id}) in experiment {handler.experiment_name}"]
            if uri.startswith(("http://", "https://")):
                lines.append(f"  open: {uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}")
            elif uri:
                lines.append(f"  open: mlflow ui --backend-store-uri {uri}")
            return lines
        return []

    def _completed(self, engine: Any) -> None:
        for line in self.summary(engine):
            logger.info(line)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"
