"""Reading a finished run back from MLflow: its best checkpoint and its record.

One implementation serves ``medseg package`` and the registry lookups here: :mod:`medseg.sharing.run_info`
(runs, k-fold parents, bare checkpoints).
"""

from __future__ import annotations

from pathlib import Path

from medseg.sharing.run_info import CHECKPOINT_SUFFIXES, RunInfo, resolve_run

__all__ = ["CHECKPOINT_SUFFIXES", "RunInfo", "fetch_run", "resolve_run"]


def fetch_run(run: str, tracking_uri: str | None = None, work_dir: str | Path | None = None) -> RunInfo:
    """An MLflow run's best checkpoint (downloaded), params, metrics, histories, tags and PNGs."""
    return resolve_run(run, work_dir=work_dir, tracking_uri=tracking_uri)
