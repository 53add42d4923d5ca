"""MLflow's system metrics (CPU, memory, disk, network; GPU when ``pynvml`` finds one) for a training run.

MLflow samples them in a background thread and logs ``system/...`` metrics to the run. It needs ``psutil`` (a medseg
dependency); without it, one warning and no system metrics.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class SystemMetrics:
    """Start and stop MLflow's ``SystemMetricsMonitor`` for one run (and move it when the run moves store).

    Args:
        interval: seconds between samples (MLflow's default is 10).
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = float(interval)
        self.monitor: Any = None

    def start(self, run_id: str, tracking_uri: str, resume: bool = False) -> None:
        self.stop()
        try:
            import psutil  # noqa: F401  (MLflow's monitor needs it)
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError as error:
            logger.warning("MLflow: no system metrics (%s); pip install psutil", error)
            return
        try:
            self.monitor = SystemMetricsMonitor(
                run_id, sampling_interval=self.interval, resume_logging=resume, tracking_uri=tracking_uri
            )
            self.monitor.start()
        except Exception as error:  # system metrics are a nicety: never stop training for them
            logger.warning("MLflow: system metrics not started (%s)", error)
            self.monitor = None

    def stop(self) -> None:
        if self.monitor is not None:
            try:
                self.monitor.finish()
                # one last sample after the thread stopped: the end-of-run state, and a record at all for a run
                # shorter than one sampling interval
                self.monitor.collect_metrics()
                self.monitor.publish_metrics(self.monitor.aggregate_metrics())
                self.monitor.mlflow_logger.flush()
            except Exception:
                pass
            self.monitor = None
