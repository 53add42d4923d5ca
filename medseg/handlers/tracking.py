"""One MLflow run per bundle run: the ignite handler a medseg bundle attaches to its trainer (or evaluator).

:class:`MLflowTracking` extends MONAI's :class:`monai.handlers.MLFlowHandler` (experiment lookup, run reuse by
name, batched logging) with what a medseg run records:

- params from the executed config and the live engines (network, encoder, loss, optimizer, learning rate, weight
  decay, scheduler, batch size, spatial size, epochs, early stopping, augmentations, seed, dataset, fold, ...);
- tags naming the code, data and machine (bundle name and version, git commit and dirty flag, datalist sha256,
  package versions, device);
- per-epoch metrics: ``train_loss``, ``val_loss``, every validation metric in ``engine.state.metrics``, ``lr``,
  ``epoch_time``; at the end ``best_<key metric>``, ``best_<key metric>_epoch`` and the ``medseg.stop_reason`` tag;
- artifacts: the executed config, ``metadata.json``, the best checkpoint, ``learning_curve.png``, overlays of a few
  validation cases and any extra files (e.g. an evaluation report);
- the run status: FINISHED, FAILED with the error (tag ``medseg.error`` and ``error.txt``), KILLED on Ctrl-C.

Attached to a trainer it also follows the evaluator of the trainer's ``ValidationHandler`` (no reference from
``validate#handlers`` to ``train#trainer`` is needed, which would be circular). When ``--tracking mlflow`` adds
MONAI's own ``MLFlowHandler`` with the same ``run_name``, this handler takes over its run and its artifacts and
detaches it, so one run is written, with one point per epoch. When a tracking server cannot be reached, the run
goes to the local SQLite store (``medseg.tracking.local_store_uri()``) with a warning that says where.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Sequence
from glob import glob
from pathlib import Path
from typing import Any

import torch
from monai.handlers import MLFlowHandler
from monai.utils import CommonKeys

from medseg.handlers.engine_handlers import attached_handlers as _attached
from medseg.handlers.engine_handlers import handler_owner as _owner
from medseg.tracking import bundle as bundle_info
from medseg.tracking import naming, plots, store

logger = logging.getLogger(__name__)

TRAIN_LOSS, VAL_LOSS, LEARNING_RATE, EPOCH_TIME = "train_loss", "val_loss", "lr", "epoch_time"


def _metric_name(name: str) -> str:
    """MLflow metric names allow letters, digits and ``_-./ :``; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-./ :]", "_", str(name))


def _plain(value: Any) -> float | None:
    """A metric value as a float, or None when it is not a finite scalar."""
    if isinstance(value, torch.Tensor):
        value = value.detach().float().mean().item() if value.numel() else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


class MLflowTracking(MLFlowHandler):
    """Record a bundle run in MLflow (see the module docstring for what is recorded).

    Args:
        tracking_uri: where runs go; None or "" resolves ``MLFLOW_TRACKING_URI``, then
            ``sqlite:///$MEDSEG_HOME/mlflow.db`` (see :func:`medseg.tracking.resolve_tracking_uri`). Unlike MONAI's
            handler, an explicit value here wins over the environment variable.
        experiment_name: None names it ``<bundle>/<dataset>`` from metadata.json and the datalist.
        run_name: None names it ``<bundle>-<kind>-<time>-<id>``; always unique so an old unfinished run is not reused.
        config: the executed config (``$medseg.tracking.executed_config()``), for params and the config artifact.
        bundle_root: the bundle folder (metadata.json, git commit).
        output_dir: the run's output folder (searched for the best checkpoint when no CheckpointSaver is found).
        datalist: the datalist file (dataset name, sha256 tag).
        params: extra params to record, overriding the collected ones.
        artifacts: extra files, folders or glob patterns logged at the end when they exist (e.g. a report).
        num_overlays: how many validation cases of the best epoch to draw.
        key_metric: the metric for ``best_*`` and the learning curve; None takes the evaluator's key metric.
        kind: ``train`` or ``evaluate``; None decides from the engine it is attached to.
        check_server_timeout: seconds to wait for a tracking server before falling back to the local store.
        kwargs: passed on to :class:`monai.handlers.MLFlowHandler`.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        config: dict | None = None,
        bundle_root: str | None = None,
        output_dir: str | None = None,
        datalist: str | None = None,
        params: dict | None = None,
        artifacts: str | Sequence[str] | None = None,
        num_overlays: int = 4,
        key_metric: str | None = None,
        kind: str | None = None,
        check_server_timeout: float = 5.0,
        **kwargs: Any,
    ) -> None:
        store.quiet_mlflow()
        self.config = dict(config or {})
        self.metadata = self._read_metadata(bundle_root)
        self.bundle_root = bundle_root
        self.output_dir = output_dir
        self.datalist = datalist
        self.extra_params = dict(params or {})
        self.extra_artifacts = [str(a) for a in ([artifacts] if isinstance(artifacts, str) else artifacts or [])]
        self.num_overlays = num_overlays
        self.key_metric = key_metric
        self.kind = kind
        self.check_server_timeout = check_server_timeout
        bundle = self.metadata.get("name", "bundle")
        self.resolved_uri = store.resolve_tracking_uri(tracking_uri)
        super().__init__(
            tracking_uri=self.resolved_uri,
            experiment_name=experiment_name or naming.experiment_name(bundle, bundle_info.datalist_name(datalist)),
            run_name=run_name,  # set when the engine is known (train/evaluate)
            iteration_log=False,
            epoch_log=False,
            close_on_complete=False,
            artifact_location=store.artifact_location(self.resolved_uri),
            **kwargs,
        )
        import mlflow

        # MONAI lets MLFLOW_TRACKING_URI win over the argument; here the argument was resolved with the env var
        # as its default, so an explicit override (--tracking_uri) wins
        self.client = mlflow.MlflowClient(tracking_uri=self.resolved_uri)
        self.main_engine: Any = None
        self.trainer: Any = None
        self.evaluators: list[Any] = []
        self.history: dict[str, dict[int, float]] = defaultdict(dict)
        self.journal: list[tuple[str, Any, int | None]] = []  # what was logged, replayed if the server goes away
        self.fallback_from: str | None = None
        self.stop_reason: str | None = None
        self.completed = False
        self._epoch_losses: list[float] = []
        self._epoch_started = 0.0
        self._epoch_lr: float | None = None
        self._val_losses: list[float] = []
        self._val_loss_broken = False
        self._cases: list[dict] = []
        self._best_cases: list[dict] = []
        self._best_cases_epoch: int | None = None
        self._adopted_artifacts: list[str] = []

    # ------------------------------------------------------------------ wiring
    @staticmethod
    def _read_metadata(bundle_root: str | None) -> dict:
        if not bundle_root:
            return {}
        path = Path(bundle_root) / "configs" / "metadata.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def attach(self, engine: Any) -> None:
        """Attach to a trainer (follows its validator too) or, for an evaluation bundle, to the evaluator.

        Args:
            engine: the ``SupervisedTrainer`` or ``SupervisedEvaluator``.
        """
        from ignite.engine import Events
        from monai.engines import Trainer

        if self.kind is None:
            self.kind = "train" if isinstance(engine, Trainer) else "evaluate"
        if self.run_name is None:
            self.run_name = naming.run_name(self.metadata.get("name", "bundle"), self.kind)
        self.main_engine = engine
        engine.add_event_handler(Events.STARTED, self.start)
        if self.kind == "train":
            self.trainer = engine
            engine.add_event_handler(Events.EPOCH_STARTED, self._train_epoch_started)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._train_iteration_completed)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._train_epoch_completed)
            engine.add_event_handler(Events.TERMINATE, self._terminated)
        else:
            self._attach_evaluator(engine)
        engine.add_event_handler(Events.COMPLETED, self._completed)
        self._wrap_run(engine)

    def _attach_evaluator(self, evaluator: Any) -> None:
        from ignite.engine import Events
        from monai.engines import IterationEvents

        if any(evaluator is seen for seen in self.evaluators):
            return
        self.evaluators.append(evaluator)
        evaluator.add_event_handler(Events.EPOCH_STARTED, self._val_epoch_started)
        evaluator.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._val_forward_completed)
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, self._val_iteration_completed)
        evaluator.add_event_handler(Events.EPOCH_COMPLETED, self._val_epoch_completed)

    def _wrap_run(self, engine: Any) -> None:
        """Record the run's end status around ``engine.run`` (ignite's own exception event may be swallowed by
        handlers attached before this one, so the status is set where the exception surfaces)."""
        original_run = engine.run

        def run_and_record(*args: Any, **kwargs: Any) -> Any:
            try:
                result = original_run(*args, **kwargs)
            except KeyboardInterrupt as error:
                self._finish("KILLED", error)
                raise
            except BaseException as error:
                self._finish("FAILED", error)
                raise
            if self.cur_run is not None:
                if self.completed:
                    self._finish("FINISHED")
                else:
                    self._finish("FAILED", RuntimeError("the engine stopped before completing (error swallowed?)"))
            return result

        engine.run = run_and_record

    # ------------------------------------------------------------------ run life
    def start(self, engine: Any) -> None:
        """Open (or re-open, by run name) the run, record params and tags, take over MONAI's own handler."""
        if self.cur_run is not None:
            return
        if store.is_remote(self.resolved_uri) and not store.server_reachable(
            self.resolved_uri, self.check_server_timeout
        ):
            self._use_local_store("no connection")
        try:
            super().start(engine)
        except Exception as error:  # a server that accepts connections but fails requests
            if not store.is_remote(self.resolved_uri):
                raise
            self._use_local_store(f"{type(error).__name__}: {error}")
            super().start(engine)
        if self.kind == "train":
            self._follow_validators(engine)
        self._take_over_monai_handlers()
        self._log_tags(self._collect_tags(engine))
        self._log_params(self._collect_params(engine))

    def _follow_validators(self, trainer: Any) -> None:
        from monai.handlers import ValidationHandler

        for handler in _attached(trainer):
            if isinstance(handler, ValidationHandler) and handler.validator is not None:
                self._attach_evaluator(handler.validator)

    def _take_over_monai_handlers(self) -> None:
        """Point every other ``MLFlowHandler`` (e.g. added by ``--tracking mlflow``) at this run and detach it.

        A handler whose ``start`` still fires (ignite is iterating that event's list now) finds the run already
        set and logs nothing new.
        """
        for engine in [self.main_engine, *self.evaluators]:
            for handler in _attached(engine):
                if handler is self or not isinstance(handler, MLFlowHandler):
                    continue
                handler.client, handler.experiment, handler.cur_run = self.client, self.experiment, self.cur_run
                self._adopted_artifacts += [str(a) for a in handler.artifacts if a]
                handler.artifacts = ()
                for event, entries in list(engine._event_handlers.items()):
                    for func, *_ in list(entries):
                        if _owner(func) is handler:
                            engine.remove_event_handler(func, event)
                logger.info("MLflow: %s's handler folded into run %s", type(handler).__name__, self.run_name)

    def _use_local_store(self, reason: str) -> None:
        """Switch to the local SQLite store, replaying what was already logged, and say where the run goes."""
        import mlflow

        local = store.local_store_uri()
        if self.resolved_uri == local:
            raise RuntimeError(f"MLflow: the local store {local} failed: {reason}")
        self.fallback_from, self.resolved_uri = self.resolved_uri, local
        message = (
            f"MLflow tracking server {self.fallback_from} cannot be reached ({reason}). Training goes on; this run "
            f"({self.run_name}) is written to the local store {local} (artifacts beside it in "
            f"{store.ARTIFACTS_DIRNAME}/); see it with: mlflow ui --backend-store-uri {local}"
        )
        logger.warning(message)
        self.client = mlflow.MlflowClient(tracking_uri=local)
        self.artifact_location = store.artifact_location(local)
        self.experiment, had_run = None, self.cur_run is not None
        self.cur_run = None
        if had_run:
            super().start(self.main_engine)
            journal, self.journal = self.journal, []
            for what, payload, step in journal:
                self._guarded(what, payload, step)
        self._log_tags({"medseg.tracking_fallback_from": self.fallback_from})

    def _send(self, what: str, payload: Any, step: int | None = None) -> None:
        """One MLflow call to the current run: ``params``/``tags``/``metrics`` dicts or an ``artifact``
        (path, sub-folder)."""
        import mlflow

        run_id = self.cur_run.info.run_id
        if what == "params":
            existing = self.client.get_run(run_id).data.params
            entries = [mlflow.entities.Param(k, v) for k, v in payload.items() if k not in existing]
            if entries:
                self.client.log_batch(run_id, params=entries)
        elif what == "tags":
            self.client.log_batch(run_id, tags=[mlflow.entities.RunTag(k, str(v)[:5000]) for k, v in payload.items()])
        elif what == "metrics":
            timestamp = int(time.time() * 1000)
            entries = [mlflow.entities.Metric(k, v, timestamp, step or 0) for k, v in payload.items()]
            self.client.log_batch(run_id, metrics=entries)
        elif what == "artifact":
            self.client.log_artifact(run_id, str(payload[0]), payload[1])

    def _guarded(self, what: str, payload: Any, step: int | None = None) -> None:
        """Send to MLflow; on a server error move to the local store (replaying the journal) and send again."""
        if self.cur_run is None:
            return
        try:
            self._send(what, payload, step)
        except Exception as error:
            if self.fallback_from is not None or not store.is_remote(self.resolved_uri):
                raise
            self._use_local_store(f"{type(error).__name__}: {error}")
            self._send(what, payload, step)
        if what != "artifact":
            self.journal.append((what, payload, step))

    def _log_params(self, params: dict[str, Any]) -> None:
        if params:
            self._guarded("params", bundle_info.format_params(params))

    def _log_tags(self, tags: dict[str, str]) -> None:
        if tags:
            self._guarded("tags", {k: str(v) for k, v in tags.items()})

    def _log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        values = {_metric_name(k): _plain(v) for k, v in metrics.items()}
        values = {k: v for k, v in values.items() if v is not None}
        if not values or self.cur_run is None:
            return
        for key, value in values.items():
            self.history[key][step or 0] = value
        self._guarded("metrics", values, step=step)

    # ------------------------------------------------------------------ params and tags
    def _collect_params(self, engine: Any) -> dict[str, Any]:
        from monai.handlers import EarlyStopHandler, LrScheduleHandler, ValidationHandler

        params = bundle_info.config_params(self.config)
        params["run_kind"] = self.kind
        dataset = bundle_info.datalist_name(self.datalist)
        if dataset:
            params["dataset"] = dataset
        trainer = self.trainer
        if trainer is not None:
            params["max_epochs"] = trainer.state.max_epochs
            loader = getattr(trainer, "data_loader", None)
            if getattr(loader, "batch_size", None) is not None:
                params["batch_size"] = loader.batch_size
            optimizer = getattr(trainer, "optimizer", None)
            if optimizer is not None and optimizer.param_groups:
                group = optimizer.param_groups[0]
                params.setdefault("optimizer", type(optimizer).__name__)
                params["optimizer.lr"] = group.get("lr")
                params["optimizer.weight_decay"] = group.get("weight_decay")
            loss = getattr(trainer, "loss_function", None)
            if loss is not None:
                params.setdefault("loss", type(loss).__name__)
            network = getattr(trainer, "network", None)
            if network is not None:
                params.setdefault("network", type(network).__name__)
            params.update(self._transform_params(loader))
        for handler in [h for e in [engine, *self.evaluators] for h in _attached(e)]:
            if isinstance(handler, EarlyStopHandler):
                params["early_stopping.patience"] = handler.patience
                params["early_stopping.min_delta"] = handler.min_delta
            elif isinstance(handler, LrScheduleHandler):
                scheduler = handler.lr_scheduler
                params.setdefault("lr_scheduler", type(scheduler).__name__)
                for attr in ("step_size", "gamma", "T_max", "eta_min", "milestones", "factor", "patience", "power"):
                    if isinstance(getattr(scheduler, attr, None), (int, float, list, set)) and not isinstance(
                        getattr(scheduler, attr), bool
                    ):
                        value = getattr(scheduler, attr)
                        params.setdefault(f"lr_scheduler.{attr}", sorted(value) if isinstance(value, set) else value)
            elif isinstance(handler, ValidationHandler):
                params["val_interval"] = handler.interval
        key = self._key_metric_name()
        if key:
            params["key_metric"] = key
        params.update(self.extra_params)
        return {k: v for k, v in params.items() if v is not None}

    @staticmethod
    def _transform_params(loader: Any) -> dict[str, Any]:
        """Augmentation switches (random transforms and their probability) and the spatial size, from the
        training dataset's transform chain."""
        params: dict[str, Any] = {}
        transform = getattr(getattr(loader, "dataset", None), "transform", None)
        pending, flat = [transform], []
        while pending:
            item = pending.pop(0)
            if item is None:
                continue
            children = getattr(item, "transforms", None)
            if isinstance(children, (list, tuple)):
                pending = list(children) + pending
            else:
                flat.append(item)
        augmentations = []
        for item in flat:
            name = type(item).__name__
            if name.startswith("Rand"):
                augmentations.append(name)
                params[f"augment.{name}"] = getattr(item, "prob", True)
            for holder in (item, getattr(item, "resizer", None), getattr(item, "cropper", None)):
                for attr in ("spatial_size", "roi_size"):
                    value = getattr(holder, attr, None) if holder is not None else None
                    if value is not None and "spatial_size" not in params:
                        params["spatial_size"] = list(value) if isinstance(value, (tuple, list)) else value
        params["augmentations"] = ",".join(augmentations) or "none"
        return params

    def _collect_tags(self, engine: Any) -> dict[str, str]:
        device = getattr(engine.state, "device", None)
        tags = bundle_info.run_tags(self.metadata, self.datalist, self.bundle_root, device)
        tags["medseg.run_kind"] = str(self.kind)
        if self.fallback_from:
            tags["medseg.tracking_fallback_from"] = self.fallback_from
        return tags

    def _key_metric_name(self) -> str | None:
        if self.key_metric:
            return self.key_metric
        for evaluator in self.evaluators:
            name = getattr(evaluator.state, "key_metric_name", None)
            if name:
                return _metric_name(name)
        return None

    # ------------------------------------------------------------------ training events
    def _train_epoch_started(self, engine: Any) -> None:
        self._epoch_losses, self._epoch_started = [], time.perf_counter()
        optimizer = getattr(engine, "optimizer", None)
        self._epoch_lr = optimizer.param_groups[0]["lr"] if optimizer is not None else None

    def _train_iteration_completed(self, engine: Any) -> None:
        output = engine.state.output
        items = output if isinstance(output, list) else [output]
        loss = items[0].get(CommonKeys.LOSS) if items and isinstance(items[0], dict) else None
        value = _plain(loss)
        if value is not None:
            self._epoch_losses.append(value)

    def _train_epoch_completed(self, engine: Any) -> None:
        metrics: dict[str, Any] = {EPOCH_TIME: time.perf_counter() - self._epoch_started}
        if self._epoch_losses:
            metrics[TRAIN_LOSS] = sum(self._epoch_losses) / len(self._epoch_losses)
        if self._epoch_lr is not None:
            metrics[LEARNING_RATE] = self._epoch_lr
        # metrics a bundle attaches to the trainer itself (e.g. train_mean_dice)
        metrics.update({k: v for k, v in engine.state.metrics.items() if _plain(v) is not None})
        self._log_metrics(metrics, step=engine.state.epoch)

    def _terminated(self, engine: Any) -> None:
        from monai.handlers import EarlyStopHandler

        # a handler that ends the run says why on engine.state (medseg.handlers.TimeBudget: "time budget")
        given = getattr(engine.state, "stop_reason", None)
        stoppers = [h for e in [engine, *self.evaluators] for h in _attached(e) if isinstance(h, EarlyStopHandler)]
        self.stop_reason = given or ("early_stopping" if stoppers else "terminated")

    # ------------------------------------------------------------------ validation events
    def _epoch_of(self, evaluator: Any) -> int:
        return self.trainer.state.epoch if self.trainer is not None else evaluator.state.epoch

    def _val_epoch_started(self, evaluator: Any) -> None:
        self._val_losses, self._cases = [], []

    def _val_forward_completed(self, evaluator: Any) -> None:
        """Validation loss with the trainer's loss function, on the raw network output (before post-processing)."""
        loss_function = getattr(self.trainer, "loss_function", None)
        if loss_function is None or self._val_loss_broken:
            return
        output = evaluator.state.output
        try:
            with torch.no_grad():
                self._val_losses.append(float(loss_function(output[CommonKeys.PRED], output[CommonKeys.LABEL])))
        except Exception as error:  # e.g. a deep-supervision loss that wants a list; the metric is then left out
            self._val_loss_broken = True
            logger.warning("MLflow: no %s: the trainer's loss failed on validation outputs (%s)", VAL_LOSS, error)

    def _val_iteration_completed(self, evaluator: Any) -> None:
        if len(self._cases) >= self.num_overlays:
            return
        output = evaluator.state.output
        for item in output if isinstance(output, list) else []:
            if len(self._cases) >= self.num_overlays or not isinstance(item, dict) or CommonKeys.PRED not in item:
                continue
            image = item.get(CommonKeys.IMAGE)
            meta = getattr(image, "meta", {}) or {}
            name = Path(str(meta.get("filename_or_obj", f"case{len(self._cases)}"))).stem
            self._cases.append(
                {
                    key: item[key].detach().cpu().numpy() if isinstance(item.get(key), torch.Tensor) else None
                    for key in (CommonKeys.IMAGE, CommonKeys.LABEL, CommonKeys.PRED)
                }
                | {"name": name}
            )

    def _val_epoch_completed(self, evaluator: Any) -> None:
        epoch = self._epoch_of(evaluator)
        metrics = {k: v for k, v in evaluator.state.metrics.items()}
        if self._val_losses and not any("loss" in str(k).lower() for k in metrics):
            metrics[VAL_LOSS] = sum(self._val_losses) / len(self._val_losses)
        self._log_metrics(metrics, step=epoch)
        best_epoch = getattr(evaluator.state, "best_metric_epoch", -1)
        if self._cases and (best_epoch in (-1, None) or best_epoch == evaluator.state.epoch):
            self._best_cases, self._best_cases_epoch = self._cases, epoch

    # ------------------------------------------------------------------ the end
    def _completed(self, engine: Any) -> None:
        self.completed = True
        if self.kind == "train" and self.stop_reason is None:
            self.stop_reason = "max_epochs" if engine.state.epoch >= engine.state.max_epochs else "terminated"

    def _summary(self) -> None:
        key = self._key_metric_name()
        for evaluator in self.evaluators[:1]:
            best, best_epoch = getattr(evaluator.state, "best_metric", None), evaluator.state.best_metric_epoch
            if key and best_epoch not in (None, -1):
                self._log_metrics({f"best_{key}": best, f"best_{key}_epoch": best_epoch}, step=best_epoch)
        tags = {"medseg.stop_reason": self.stop_reason} if self.stop_reason else {}
        if key:
            tags["medseg.key_metric"] = key
        self._log_tags(tags)

    def _best_checkpoint(self) -> Path | None:
        from monai.handlers import CheckpointSaver

        savers = [
            h for e in [*self.evaluators, self.main_engine] for h in _attached(e) if isinstance(h, CheckpointSaver)
        ]
        for attr in ("_key_metric_checkpoint", "_final_checkpoint"):
            for saver in savers:
                checkpoint = getattr(saver, attr, None)
                if checkpoint is None or checkpoint.last_checkpoint is None:
                    continue
                # MONAI's saver writes a fixed file name (key_metric_filename="model.pt") where ignite records
                # the name its pattern made ("model_key_metric=0.8123.pt"): take the file that was written
                handler = checkpoint.save_handler
                fixed = getattr(handler, "filename", None)
                path = Path(handler.dirname) / fixed if fixed else Path(checkpoint.last_checkpoint)
                if path.is_file():
                    return path
        if self.output_dir:  # a checkpoint written by other means: the newest .pt under output_dir
            found = sorted(Path(self.output_dir).rglob("*.pt"), key=lambda p: p.stat().st_mtime)
            return found[-1] if found else None
        return None

    def _write_artifacts(self, folder: Path, error: BaseException | None) -> list[tuple[Path, str | None]]:
        """Files to log as (path, artifact sub-folder)."""
        files: list[tuple[Path, str | None]] = []
        if self.config:
            path = folder / "executed_config.json"
            path.write_text(json.dumps(self.config, indent=2, default=str))
            files.append((path, "config"))
        metadata = self.config.get("_meta_") or self.metadata
        if metadata:
            path = folder / "metadata.json"
            path.write_text(json.dumps(metadata, indent=2, default=str))
            files.append((path, "config"))
        key = self._key_metric_name()
        if any(self.history.get(k) for k in (TRAIN_LOSS, VAL_LOSS)) or (key and self.history.get(key)):
            path = plots.learning_curve_png(self.history, folder / "learning_curve.png", (TRAIN_LOSS, VAL_LOSS), key)
            files.append((path, "plots"))
        for i, case in enumerate(self._best_cases):
            if case[CommonKeys.IMAGE] is None or case[CommonKeys.PRED] is None:
                continue
            title = f"{case['name']} (epoch {self._best_cases_epoch}; green truth, red prediction)"
            path = folder / f"overlay_{i:02d}_{case['name']}.png"
            files.append(
                (
                    plots.overlay_png(case[CommonKeys.IMAGE], case[CommonKeys.LABEL], case["pred"], path, title),
                    "overlays",
                )
            )
        if self.kind == "train":  # an evaluation run reads a checkpoint, it does not make one
            checkpoint = self._best_checkpoint()
            if checkpoint is not None:
                files.append((checkpoint, "checkpoints"))
        for pattern in self.extra_artifacts + self._adopted_artifacts:
            for found in sorted(glob(pattern)) or []:
                found_path = Path(found)
                if found_path.is_file():
                    files.append((found_path, "extra"))
                elif found_path.is_dir():
                    files += [(p, f"extra/{found_path.name}") for p in sorted(found_path.rglob("*")) if p.is_file()]
        if error is not None:
            path = folder / "error.txt"
            path.write_text("".join(traceback.format_exception(type(error), error, error.__traceback__)))
            files.append((path, None))
        return files

    def _finish(self, status: str, error: BaseException | None = None) -> None:
        """Log the summary and artifacts, then end the run with ``status``; tracking errors never hide ``error``."""
        if self.cur_run is None:
            return
        try:
            if error is not None:
                self._log_tags(
                    {"medseg.error": f"{type(error).__name__}: {error}", "medseg.stop_reason": status.lower()}
                )
            self._summary()
            with tempfile.TemporaryDirectory(prefix="medseg-mlflow-") as folder:
                for path, subfolder in self._write_artifacts(Path(folder), error):
                    self._guarded("artifact", (path, subfolder))
        except Exception as tracking_error:
            if error is None:
                raise
            logger.error("MLflow: recording the failed run failed too: %s", tracking_error)
        finally:
            try:
                self.client.set_terminated(self.cur_run.info.run_id, status)
            finally:
                uri = self.resolved_uri
                logger.info("MLflow: run %s (%s) ended %s in %s", self.run_name, self.cur_run.info.run_id, status, uri)
                self.cur_run = None
                self._dispose_sqlite_store()

    def close(self) -> None:
        """End the run as FINISHED (if it is still open)."""
        self._finish("FINISHED")
