"""One MLflow run per bundle run: the ignite handler a medseg bundle attaches to its trainer (or evaluator).

The handler only listens to the engines; everything sent to MLflow goes through :mod:`medseg.tracking`
(:class:`~medseg.tracking.recorder.RunRecorder` and the modules beside it). What a run contains is listed in
``docs/tracking.md``. Attached to a trainer it also follows the evaluator of the trainer's ``ValidationHandler``.
When ``--tracking mlflow`` adds MONAI's own ``MLFlowHandler``, this handler folds it into its own run (one run,
one point per epoch).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Sequence
from glob import glob
from pathlib import Path
from typing import Any

from monai.utils import CommonKeys

from medseg.handlers.engine_handlers import attached_handlers as _attached
from medseg.handlers.engine_handlers import handler_owner as _owner
from medseg.tracking import bundle as bundle_info
from medseg.tracking import engines as names
from medseg.tracking import naming, plots, store
from medseg.tracking.recorder import RunRecorder

logger = logging.getLogger(__name__)


class MLflowTracking:
    """Record a bundle run in MLflow (see ``docs/tracking.md`` for what is recorded).

    Args:
        tracking_uri: where runs go; None or "" resolves ``MLFLOW_TRACKING_URI``, then
            ``sqlite:///$MEDSEG_HOME/mlflow.db``. An explicit value wins over the environment variable.
        experiment_name: None names it ``<bundle>/<dataset>`` from metadata.json and the datalist.
        run_name: None names it ``<bundle>-<kind>-<time>-<id>``. An unfinished run of this name is re-opened.
        execute_config: MONAI's executed config (``"@save_execute_config"``: the file MONAI writes with
            ``--tracking``), or the config as a dict. Without it a loud warning says what is missing.
        params: the values that define the run, by reference (the bundle's ``tracked_params``): what ran.
        bundle_root: the bundle folder (metadata.json, inference.json, git commit).
        output_dir: the run's output folder (locked for one training; searched for the best checkpoint).
        datalist: the datalist file (dataset inputs, class statistics, sha256 tag).
        artifacts: extra files, folders or glob patterns logged at the end when they exist (e.g. a report).
        num_overlays: how many validation cases of the best epoch to draw.
        key_metric: the metric for ``best`` values and the learning curve; None takes the evaluator's key metric.
        kind: ``train`` or ``evaluate``; None decides from the engine it is attached to.
        log_model: log the kept checkpoint's network as an MLflow model at the end of training.
        network: what the kept checkpoint was saved from (the bundle's ``checkpoint_network``: a module, or a
            :class:`medseg.bundle.StateDictWithout` view without training-only parts), the network the logged model
            is built from; None takes the trainer's network.
        register_model_name: register that model under this name in the Model Registry (a new version).
        system_metrics: log MLflow's system metrics (CPU, memory, GPU) during training.
        system_metrics_interval: seconds between system metric samples (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``
            wins when set).
        config: an older spelling of ``execute_config`` (a dict).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        execute_config: Any = None,
        params: dict | None = None,
        bundle_root: str | None = None,
        output_dir: str | None = None,
        datalist: str | None = None,
        artifacts: str | Sequence[str] | None = None,
        num_overlays: int = 4,
        key_metric: str | None = None,
        kind: str | None = None,
        log_model: bool = True,
        register_model_name: str | None = None,
        system_metrics: bool = True,
        system_metrics_interval: float | None = None,
        config: dict | None = None,
        network: Any = None,
    ) -> None:
        store.quiet_mlflow()
        store.bound_http_requests()
        self.execute_config = execute_config if execute_config not in (None, True, False) else config
        self.config = bundle_info.executed_config(self.execute_config)
        self.metadata = self.config.get("_meta_") or _read_json(Path(bundle_root or ".") / "configs" / "metadata.json")
        self.bundle_root = bundle_root
        self.output_dir = output_dir
        self.datalist = datalist
        self.extra_params = dict(params or {})
        self.extra_artifacts = [str(a) for a in ([artifacts] if isinstance(artifacts, str) else artifacts or [])]
        self.num_overlays = num_overlays
        self.key_metric = key_metric
        self.kind = kind
        self.log_model = log_model
        self.network = network
        self.register_model_name = register_model_name or None
        self.system_metrics = system_metrics
        # MLflow's own setting when given, else 10 s (MLflow's default)
        env_interval = os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
        self.system_metrics_interval = float(system_metrics_interval or env_interval or 10.0)
        self.tracking_uri = store.resolve_tracking_uri(tracking_uri)
        bundle = self.metadata.get("name", "bundle")
        self.experiment_name = experiment_name or naming.experiment_name(bundle, bundle_info.datalist_name(datalist))
        self.run_name = run_name
        self.recorder: RunRecorder | None = None
        self.main_engine: Any = None
        self.trainer: Any = None
        self.evaluators: list[Any] = []
        self.history: dict[str, dict[int, float]] = defaultdict(dict)
        self.stop_reason: str | None = None
        self.completed = False
        self._epoch_losses: list[float] = []
        self._epoch_started = 0.0
        self._epoch_lr: float | None = None
        self._val_losses: list[float] = []
        # the trainer's loss on validation outputs is only a stand-in for an evaluator without a val_loss metric;
        # settled once a validation shows the metric, or once its failure has been said
        self._val_loss_settled = False
        self._val_loss_error: Exception | None = None
        self._cases: list[dict] = []
        self._best_cases: list[dict] = []
        self._best_cases_epoch: int | None = None
        self._adopted_artifacts: list[str] = []
        self._lock: Any = None
        self._sigterm: Any = None
        self._system: Any = None

    # ------------------------------------------------------------------ wiring
    def attach(self, engine: Any) -> None:
        """Attach to a trainer (follows its validator too) or, for an evaluation bundle, to the evaluator.

        A training takes the lock of its ``output_dir`` here, before any data is read.

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
        if self.kind == "train" and self.output_dir:
            from medseg.tracking.locks import OutputDirLock

            self._lock = OutputDirLock(self.output_dir, self.run_name)
            self._lock.acquire()
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
        """Record the end status where ``engine.run`` returns or raises (ignite's exception event may be swallowed
        by handlers attached before this one)."""
        from medseg.tracking.signals import EXIT_STATUS, SigtermGuard, Terminated

        original_run = engine.run

        def run_and_record(*args: Any, **kwargs: Any) -> Any:
            if self.kind == "train":
                self._sigterm = SigtermGuard(engine.terminate)
                self._sigterm.install()
            try:
                result = original_run(*args, **kwargs)
            except (KeyboardInterrupt, Terminated) as error:
                self.stop_reason = "sigterm" if isinstance(error, Terminated) else "interrupted"
                self._finish("KILLED", error)
                raise
            except BaseException as error:
                self._finish("FAILED", error)
                raise
            finally:
                if self._sigterm is not None:
                    self._sigterm.restore()
            if self._sigterm is not None and self._sigterm.received:
                self.stop_reason = "sigterm"
                self._finish("KILLED")
                raise SystemExit(EXIT_STATUS)
            if self.recorder is not None and self.recorder.is_open:
                if self.completed:
                    self._finish("FINISHED")
                else:
                    self._finish("FAILED", RuntimeError("the engine stopped before completing (error swallowed?)"))
            return result

        engine.run = run_and_record

    # ------------------------------------------------------------------ run life
    def start(self, engine: Any) -> None:
        """Open (or re-open, by run name) the run; record tags, params, dataset inputs; start system metrics."""
        if self.recorder is not None and self.recorder.is_open:
            return
        if self.kind == "train":
            self._follow_validators(engine)
        if not self.config:
            logger.warning(bundle_info.MISSING_CONFIG_WARNING)
        self.recorder = RunRecorder(
            self.tracking_uri,
            self.experiment_name,
            self.run_name,
            experiment_description=self.metadata.get("description"),
            fallback_near=self.output_dir,
            on_switch=self._store_switched,
        )
        self.recorder.open(self._collect_tags(engine))
        naming.release(self.run_name)
        self._take_over_monai_handlers()
        self.recorder.log_params(self._collect_params(engine))
        if self.datalist:
            self._log_dataset()
        if self.kind == "train" and self.system_metrics and self.recorder.is_open:
            from medseg.tracking.system import SystemMetrics

            self._system = SystemMetrics(self.system_metrics_interval)
            self._system.start(self.recorder.run_id, self.recorder.tracking_uri)

    def resumed(self, epoch: int) -> None:
        """The trainer continues a stopped run at ``epoch`` (``medseg.strategies.resume``): mark it and take the
        curves logged before the stop into the learning curve."""
        if self.recorder is None or not self.recorder.is_open:
            return
        try:
            self.recorder.log_tags({"medseg.resumed_at_epoch": epoch})
            for key, points in self.recorder.history().items():
                for step, value in points:
                    self.history[key].setdefault(step, value)
        except Exception as error:  # tracking never stops training
            logger.warning("MLflow: could not read back run %s (%s)", self.run_name, error)

    def _store_switched(self, uri: str) -> None:
        if self._system is not None:
            self._system.stop()  # restarted on the new store at the next epoch (see _train_epoch_completed)

    def _log_dataset(self) -> None:
        from medseg.tracking import datasets

        try:
            inputs = datasets.dataset_inputs(self.datalist)
        except Exception as error:  # a datalist MLflow cannot profile: the params and files still say what it was
            logger.warning("MLflow: the datalist is not logged as a dataset (%s)", error)
            inputs = []
        self.recorder.log_inputs(inputs)
        self.recorder.log_params(datasets.dataset_params(self.datalist))

    def _follow_validators(self, trainer: Any) -> None:
        from monai.handlers import ValidationHandler

        for handler in _attached(trainer):
            if isinstance(handler, ValidationHandler) and handler.validator is not None:
                self._attach_evaluator(handler.validator)

    def _take_over_monai_handlers(self) -> None:
        """Detach every MONAI ``MLFlowHandler`` (e.g. added by ``--tracking mlflow``) and take its artifacts.

        A handler whose ``start`` still fires (ignite is iterating that event's list now) finds a run already set
        on it (this one) and creates nothing.
        """
        from monai.handlers import MLFlowHandler

        recorder = self.recorder
        for engine in [self.main_engine, *self.evaluators]:
            for handler in _attached(engine):
                if not isinstance(handler, MLFlowHandler):
                    continue
                if recorder.is_open:
                    handler.client = recorder.client
                    handler.experiment = recorder.client.get_experiment(recorder.experiment_id)
                    handler.cur_run = recorder.client.get_run(recorder.run_id)
                self._adopted_artifacts += [str(a) for a in handler.artifacts if a]
                handler.artifacts = ()
                for event, entries in list(engine._event_handlers.items()):
                    for func, *_ in list(entries):
                        if _owner(func) is handler:
                            engine.remove_event_handler(func, event)
                logger.info("MLflow: MONAI's MLFlowHandler folded into run %s", self.run_name)

    # ------------------------------------------------------------------ params and tags
    def _collect_params(self, engine: Any) -> dict[str, Any]:
        params = bundle_info.config_params(self.config)
        params.update({k: v for k, v in self.extra_params.items() if _is_value(v)})
        params["run_kind"] = self.kind
        dataset = bundle_info.datalist_name(self.datalist)
        if dataset:
            params["dataset"] = dataset
        params.update(names.engine_params(self.trainer, [engine, *self.evaluators]))
        key = self._key_metric_name()
        if key:
            params["key_metric"] = key
        if self.register_model_name and self.kind == "train":
            params["register_model_name"] = self.register_model_name
        return {k: v for k, v in params.items() if v is not None}

    def _collect_tags(self, engine: Any) -> dict[str, str]:
        device = getattr(engine.state, "device", None) or getattr(engine, "device", None)
        tags = bundle_info.run_tags(self.metadata, self.datalist, self.bundle_root, device)
        tags["medseg.run_kind"] = str(self.kind)
        return tags

    def _group(self) -> str:
        return names.VAL if self.kind == "train" else names.EVAL

    def _key_metric_name(self) -> str | None:
        """The key metric as logged (``val/mean_dice``)."""
        if self.key_metric:
            return names.grouped(self.key_metric, self._group())
        raw = names.evaluator_key_metric(self.evaluators)
        return names.grouped(raw, self._group()) if raw else None

    def _log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        values = {k: names.plain(v) for k, v in metrics.items()}
        values = {k: v for k, v in values.items() if v is not None}
        if not values or self.recorder is None or not self.recorder.is_open:
            return
        for key, value in values.items():
            self.history[key][step] = value
        self.recorder.log_metrics(values, step)

    # ------------------------------------------------------------------ training events
    def _train_epoch_started(self, engine: Any) -> None:
        self._epoch_losses, self._epoch_started = [], time.perf_counter()
        optimizer = getattr(engine, "optimizer", None)
        self._epoch_lr = optimizer.param_groups[0]["lr"] if optimizer is not None else None

    def _train_iteration_completed(self, engine: Any) -> None:
        output = engine.state.output
        items = output if isinstance(output, list) else [output]
        loss = items[0].get(CommonKeys.LOSS) if items and isinstance(items[0], dict) else None
        value = names.plain(loss)
        if value is not None:
            self._epoch_losses.append(value)

    def _train_epoch_completed(self, engine: Any) -> None:
        metrics: dict[str, Any] = {names.EPOCH_TIME: time.perf_counter() - self._epoch_started}
        if self._epoch_losses:
            metrics[names.TRAIN_LOSS] = sum(self._epoch_losses) / len(self._epoch_losses)
        if self._epoch_lr is not None:
            metrics[names.LEARNING_RATE] = self._epoch_lr
        # metrics a bundle attaches to the trainer itself (e.g. train_mean_dice)
        metrics.update({names.grouped(k, names.TRAIN): v for k, v in engine.state.metrics.items()})
        self._log_metrics(metrics, step=engine.state.epoch)
        recorder = self.recorder
        if self._system is not None and self._system.monitor is None and recorder is not None and recorder.is_open:
            self._system.start(recorder.run_id, recorder.tracking_uri, resume=True)  # after a store fallback

    def _terminated(self, engine: Any) -> None:
        from monai.handlers import EarlyStopHandler

        if self._sigterm is not None and self._sigterm.received:
            self.stop_reason = "sigterm"
            return
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
        """Validation loss with the trainer's loss function, on the raw network output (before post-processing),
        until the first validation shows that the evaluator computes a ``val_loss`` metric itself."""
        import torch

        loss_function = getattr(self.trainer, "loss_function", None)
        if loss_function is None or self._val_loss_settled or self._val_loss_error is not None:
            return
        output = evaluator.state.output
        try:
            with torch.no_grad():
                self._val_losses.append(float(loss_function(output[CommonKeys.PRED], output[CommonKeys.LABEL])))
        except Exception as error:  # e.g. a deep-supervision loss that wants a list; said once the epoch shows it
            self._val_loss_error = error

    def _val_iteration_completed(self, evaluator: Any) -> None:
        if len(self._cases) >= self.num_overlays:
            return
        import torch

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
        group = self._group()
        metrics = {names.grouped(k, group): v for k, v in evaluator.state.metrics.items()}
        val_loss = f"{group}/loss"
        if val_loss in metrics:
            self._val_loss_settled = True
        elif self._val_loss_error is not None and not self._val_loss_settled:
            self._val_loss_settled = True
            error = self._val_loss_error
            logger.warning("MLflow: no %s: the trainer's loss failed on validation outputs (%s)", val_loss, error)
        elif self._val_losses and self._val_loss_error is None:
            metrics[val_loss] = sum(self._val_losses) / len(self._val_losses)
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
                best_key = names.best_name(key)
                self._log_metrics({best_key: best, f"{best_key}_epoch": best_epoch}, step=best_epoch)
        tags = {"medseg.stop_reason": self.stop_reason} if self.stop_reason else {}
        if key:
            tags["medseg.key_metric"] = key
        self.recorder.log_tags(tags)

    def _kept_checkpoint(self) -> Path | None:
        from monai.handlers import CheckpointSaver

        savers = [
            h for e in [*self.evaluators, self.main_engine] for h in _attached(e) if isinstance(h, CheckpointSaver)
        ]
        written = []
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
                    written.append(path)
        # the bundles keep their model as model.pt, the best epoch's or the last one's (keep_checkpoint)
        kept = [path for path in written if path.name == "model.pt"]
        if kept or written:
            return (kept or written)[0]
        if self.output_dir:  # a checkpoint written by other means: the newest .pt under output_dir
            found = sorted(Path(self.output_dir).rglob("*.pt"), key=lambda p: p.stat().st_mtime)
            return found[-1] if found else None
        return None

    def _write_artifacts(self, folder: Path, error: BaseException | None) -> list[tuple[Path, str | None]]:
        """Files to log as (path, artifact sub-folder)."""
        from medseg.tracking import datasets

        files: list[tuple[Path, str | None]] = []
        if self.config:
            path = folder / "executed_config.json"
            path.write_text(json.dumps(self.config, indent=2, default=str))
            files.append((path, "config"))
        if self.metadata:
            path = folder / "metadata.json"
            path.write_text(json.dumps(self.metadata, indent=2, default=str))
            files.append((path, "config"))
        if self.datalist:
            files += [(p, "data") for p in datasets.dataset_files(self.datalist)]
        key = self._key_metric_name()
        if any(self.history.get(k) for k in (names.TRAIN_LOSS, names.VAL_LOSS)) or (key and self.history.get(key)):
            path = plots.learning_curve_png(
                self.history, folder / "learning_curve.png", (names.TRAIN_LOSS, names.VAL_LOSS), key
            )
            files.append((path, "plots"))
        for i, case in enumerate(self._best_cases):
            if case[CommonKeys.IMAGE] is None or case[CommonKeys.PRED] is None:
                continue
            title = f"{case['name']} (epoch {self._best_cases_epoch}; green truth, red prediction)"
            path = folder / f"overlay_{i:02d}_{case['name']}.png"
            overlay = plots.overlay_png(case[CommonKeys.IMAGE], case[CommonKeys.LABEL], case["pred"], path, title)
            files.append((overlay, "overlays"))
        if self.kind == "train":  # an evaluation run reads a checkpoint, it does not make one
            from medseg.postprocessing import decision_beside

            checkpoint = self._kept_checkpoint()
            if checkpoint is not None:
                files.append((checkpoint, "checkpoints"))
                # its post-processing decision travels with it: `medseg package --run` applies it
                decision = decision_beside(checkpoint)
                if decision is not None:
                    files.append((Path(decision), "checkpoints"))
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

    def _log_network(self) -> None:
        """The kept checkpoint's network as an MLflow model (and a registry version when a name is set)."""
        from medseg.tracking.models import log_network

        network = self.network if self.network is not None else getattr(self.trainer, "network", None)
        checkpoint = self._kept_checkpoint()
        if network is None:
            return
        extra = (
            [Path(self.bundle_root) / "configs" / n for n in ("inference.json", "metadata.json")]
            if (self.bundle_root)
            else []
        )
        spatial = self.config.get("spatial_size") or self.extra_params.get("spatial_size")
        self.recorder.call(
            lambda client, run_id, uri: log_network(
                client, run_id, uri, network, checkpoint, self.metadata, extra, self.register_model_name, spatial
            )
        )

    def _finish(self, status: str, error: BaseException | None = None) -> None:
        """Log the summary, artifacts and model, then end the run with ``status``; tracking errors never hide
        ``error`` and never stop a training that succeeded."""
        recorder = self.recorder
        if self._system is not None:
            self._system.stop()
        try:
            if recorder is None or not recorder.is_open:
                return
            try:
                if error is not None:
                    recorder.log_tags({"medseg.error": f"{type(error).__name__}: {error}"})
                if error is not None or status != "FINISHED":
                    recorder.log_tags({"medseg.stop_reason": self.stop_reason or status.lower()})
                self._summary()
                with tempfile.TemporaryDirectory(prefix="medseg-mlflow-") as folder:
                    for path, subfolder in self._write_artifacts(Path(folder), error):
                        recorder.log_artifact(path, subfolder)
                if self.kind == "train" and self.log_model and status == "FINISHED":
                    self._log_network()
            except Exception as tracking_error:
                logger.error("MLflow: recording the end of run %s failed: %s", self.run_name, tracking_error)
            finally:
                recorder.finish(status)
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def close(self) -> None:
        """End the run as FINISHED (if it is still open)."""
        self._finish("FINISHED")


def _read_json(path: Path) -> dict:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _is_value(value: Any) -> bool:
    """A param value worth logging: a scalar or a short list of scalars (not an object the config built)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return True
    return (
        isinstance(value, (list, tuple))
        and len(value) <= 16
        and all(isinstance(v, (bool, int, float, str)) for v in value)
    )
