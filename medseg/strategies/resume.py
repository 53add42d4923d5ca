"""Resume a stopped run (Ctrl-C, crash) from its last checkpoint, into the same MLflow run.

:class:`ResumeCheckpoint` (wired by ``bundles/strategies/resume.json``) writes ``<save_dir>/last.pt`` at the end of
every epoch, after validation, atomically (a Ctrl-C while writing leaves the previous one). It holds everything the
next epoch depends on: the model, the optimizer, every learning-rate scheduler of the trainer, the trainer's epoch
and iteration, the early-stopping counters, the evaluators' best metric (so ``model.pt`` is only replaced by a
better epoch), the AMP scaler, plus the bundle name, the network's parameter shapes and the MLflow run name.

With ``resume`` set, the checkpoint is checked against the bundle and network when the trainer is built (a clear
error before any training), loaded when the trainer starts, and the run continues at the epoch after the last
completed one, logging into the same MLflow run (same name; its status goes back to RUNNING).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from medseg.handlers.engine_handlers import attached_handlers as _attached
from medseg.strategies.errors import StrategyError

logger = logging.getLogger(__name__)
CHECKPOINT_NAME = "last.pt"
META_KEY = "medseg"


def _as_resume(value: Any) -> bool | Path:
    """``--resume`` as given on the command line: a boolean (``True``, ``true``, ``1``...) or a checkpoint path."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip()
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off", "", "none"):
        return False
    return Path(text)


class _BestMetric:
    """An evaluator's best metric and epoch as a state dict (ignite's engine state leaves them out)."""

    def __init__(self, evaluator: Any) -> None:
        self.evaluator = evaluator

    def state_dict(self) -> dict:
        state = self.evaluator.state
        return {
            "best_metric": getattr(state, "best_metric", -1),
            "best_metric_epoch": getattr(state, "best_metric_epoch", -1),
        }

    def load_state_dict(self, state: dict) -> None:
        self.evaluator.state.best_metric = state["best_metric"]
        self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]


class ResumeCheckpoint:
    """Ignite handler on the trainer: save the full training state every epoch and, with ``resume``, continue.

    Args:
        save_dir: folder of ``last.pt`` (``resume.json``: ``@output_dir/resume``).
        resume: False to start afresh (still saving), True to continue from ``save_dir/last.pt``, or the path of
            a checkpoint to continue from.
        bundle: the bundle's name, stored and checked on resume.
        save_interval: save every this many epochs.
        network: the network (``@network``), to check the checkpoint when the trainer is built; None checks it
            when the trainer starts.
    """

    def __init__(
        self,
        save_dir: str,
        resume: Any = False,
        bundle: str | None = None,
        save_interval: int = 1,
        network: Any = None,
    ) -> None:
        self.save_dir = Path(save_dir)
        resume = _as_resume(resume)
        self.resume_from: Path | None = (
            resume if isinstance(resume, Path) else self.save_dir / CHECKPOINT_NAME if resume else None
        )
        self.bundle = bundle
        self.save_interval = max(1, int(save_interval))
        self.network = network
        self.engine: Any = None
        self.checkpoint: dict | None = None

    # ------------------------------------------------------------------ wiring
    def attach(self, engine: Any) -> None:
        """Check the checkpoint now (before any data is loaded), load it at ``STARTED``, save every epoch."""
        from ignite.engine import Events

        self.engine = engine
        if self.resume_from is not None:
            self.checkpoint = self._read_and_check(self.network)
            saved_run = self.checkpoint[META_KEY].get("mlflow_run_name")
            for handler in self._mlflow_handlers():
                if saved_run:
                    handler.run_name = saved_run  # MONAI's MLFlowHandler re-opens the unfinished run of this name
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)

    def _mlflow_handlers(self) -> list[Any]:
        """medseg's ``MLflowTracking`` (and MONAI's ``MLFlowHandler``) on the trainer: both re-open a run by name."""
        from monai.handlers import MLFlowHandler

        from medseg.handlers.tracking import MLflowTracking

        return [h for h in _attached(self.engine) if isinstance(h, (MLflowTracking, MLFlowHandler))]

    def _evaluators(self) -> list[Any]:
        from monai.handlers import ValidationHandler

        return [h.validator for h in _attached(self.engine) if isinstance(h, ValidationHandler) and h.validator]

    def _objects(self) -> dict[str, Any]:
        """Everything whose state the next epoch depends on, by a stable name."""
        from monai.handlers import CheckpointSaver, EarlyStopHandler, LrScheduleHandler

        engine = self.engine
        objects: dict[str, Any] = {"model": engine.network, "optimizer": engine.optimizer, "trainer": engine}
        if getattr(engine, "scaler", None) is not None:
            objects["amp_scaler"] = engine.scaler
        schedulers = [h.lr_scheduler for h in _attached(engine) if isinstance(h, LrScheduleHandler)]
        objects.update({f"lr_scheduler_{i}": s for i, s in enumerate(schedulers)})
        evaluators = self._evaluators()
        stoppers = [h for e in [engine, *evaluators] for h in _attached(e) if isinstance(h, EarlyStopHandler)]
        objects.update({f"early_stopping_{i}": h._handler for i, h in enumerate(stoppers) if h._handler is not None})
        objects.update({f"evaluator_{i}": _BestMetric(e) for i, e in enumerate(evaluators)})
        savers = [h for e in [engine, *evaluators] for h in _attached(e) if isinstance(h, CheckpointSaver)]
        key_savers = [s._key_metric_checkpoint for s in savers if getattr(s, "_key_metric_checkpoint", None)]
        objects.update({f"key_metric_saver_{i}": c for i, c in enumerate(key_savers)})
        return objects

    # ------------------------------------------------------------------ resume
    def _read_and_check(self, network: Any) -> dict:
        import torch

        from medseg.bundle.checkpoint import mismatch_summary

        path = self.resume_from
        if not path.is_file():
            raise StrategyError(
                f"{path}: no checkpoint to resume from. Resuming needs a run started with "
                "bundles/strategies/resume.json (it writes resume/last.pt every epoch) and the same --output_dir"
            )
        try:
            # weights only: a resume file is tensors, numbers and strings; a pickle that runs code is refused
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            raise StrategyError(
                f"{path}: not a weights-only checkpoint ({type(error).__name__}: {reason}); resume only from the "
                "resume/last.pt that resume.json writes"
            ) from None
        if not isinstance(checkpoint, dict) or META_KEY not in checkpoint or "model" not in checkpoint:
            raise StrategyError(
                f"{path}: not a medseg resume checkpoint (no {META_KEY!r} and 'model' entries); resume from the "
                "resume/last.pt that resume.json writes"
            )
        meta = checkpoint[META_KEY]
        if self.bundle and meta.get("bundle") and meta["bundle"] != self.bundle:
            raise StrategyError(
                f"{path}: checkpoint of bundle {meta['bundle']!r}, not {self.bundle!r}; resume with that bundle, or "
                "start this one without --resume"
            )
        problem = mismatch_summary(network, checkpoint["model"]) if network is not None else ""
        if problem:
            raise StrategyError(
                f"{path}: checkpoint of another network ({meta.get('network', '?')}; {problem}); resume with the "
                "network_def it was trained with, or start without --resume"
            )
        return checkpoint

    def started(self, engine: Any) -> None:
        """Load the checkpoint (when resuming) into everything, keeping the configured ``max_epochs``."""
        if self.checkpoint is None:
            return
        from ignite.handlers import Checkpoint

        if self.network is None:  # not checked when the trainer was built
            self._read_and_check(engine.network)
        objects = self._objects()
        missing = sorted(k for k in objects if k not in self.checkpoint)
        if missing:
            raise StrategyError(
                f"{self.resume_from}: the checkpoint has no state for {', '.join(missing)}; it was written by a run "
                "configured differently (scheduler, early stopping, validation); resume with the same overrides"
            )
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=objects, checkpoint={k: self.checkpoint[k] for k in objects})
        if engine.state.epoch >= max_epochs:
            raise StrategyError(
                f"{self.resume_from}: the run already completed {engine.state.epoch} epochs (max_epochs "
                f"{max_epochs}); raise --max_epochs to train further"
            )
        engine.state.max_epochs = max_epochs
        logger.info("resumed from %s at epoch %d of %d", self.resume_from, engine.state.epoch, max_epochs)
        self._reopen_mlflow_run(engine.state.epoch)
        self.checkpoint = None

    def _reopen_mlflow_run(self, epoch: int) -> None:
        """Tell the tracking handler the run resumed (it re-opened the run by name, status RUNNING again)."""
        for handler in self._mlflow_handlers():
            resumed = getattr(handler, "resumed", None)
            if resumed is not None:
                resumed(epoch)

    # ------------------------------------------------------------------ save
    def save(self, engine: Any) -> None:
        """Write ``last.pt`` (atomically: a temporary file, then a rename)."""
        import torch

        run_names = [h.run_name for h in self._mlflow_handlers() if h.run_name]
        state = {name: obj.state_dict() for name, obj in self._objects().items()}
        state[META_KEY] = {
            "bundle": self.bundle,
            "network": type(engine.network).__name__,
            "epoch": engine.state.epoch,
            "mlflow_run_name": run_names[0] if run_names else None,
        }
        self.save_dir.mkdir(parents=True, exist_ok=True)
        target = self.save_dir / CHECKPOINT_NAME
        partial = target.with_suffix(".pt.partial")
        torch.save(state, partial)
        os.replace(partial, target)
