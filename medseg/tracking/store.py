"""Where MLflow runs go: the default SQLite store, URI resolution and reachability.

Resolution order for the tracking URI (first that is set wins):

1. an explicit value (a bundle override such as ``--tracking_uri URI``, or ``medseg compare --tracking_uri``);
2. the ``MLFLOW_TRACKING_URI`` environment variable;
3. ``sqlite:///$MEDSEG_HOME/mlflow.db`` with ``MEDSEG_HOME`` defaulting to ``~/.medseg``.

Artifacts of a local SQLite store live in ``mlartifacts/`` beside the database file.
Nothing here imports MLflow, so the CLI stays fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ENV_HOME = "MEDSEG_HOME"
STORE_FILENAME = "mlflow.db"
ARTIFACTS_DIRNAME = "mlartifacts"


def medseg_home() -> Path:
    """The folder for medseg's own state (``$MEDSEG_HOME``, default ``~/.medseg``)."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".medseg").expanduser().resolve()


def sqlite_uri(db_path: str | Path) -> str:
    """An absolute ``sqlite:///`` URI for a database file (the folder is created)."""
    db_path = Path(db_path).expanduser().resolve()
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable home: opening the store fails later, and the run falls back (open_client)
        pass
    return f"sqlite:///{db_path.as_posix()}"


def local_store_uri() -> str:
    """The default local store: ``sqlite:///$MEDSEG_HOME/mlflow.db``."""
    return sqlite_uri(medseg_home() / STORE_FILENAME)


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The tracking URI to use: ``explicit``, else ``MLFLOW_TRACKING_URI``, else the local store.

    Args:
        explicit: a URI given on the command line or in a config override; empty means not given.

    Returns:
        a URI MLflow accepts (``sqlite:///...``, ``http(s)://...``, ``postgresql://...``, ...).

    Raises:
        ValueError: the URI is a plain folder or ``file://`` URI, which MLflow 3 no longer accepts as a store.
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or local_store_uri()
    if uri.startswith("file:") or "://" not in uri:
        raise ValueError(
            f"tracking URI {uri!r} is a folder; MLflow 3 needs a database or a server: use "
            f"'{sqlite_uri(Path(uri.removeprefix('file://')) / STORE_FILENAME)}' or 'http://HOST:PORT'"
        )
    return uri


def artifact_location(tracking_uri: str) -> str | None:
    """Where new experiments keep artifacts: ``mlartifacts/`` beside a SQLite file; the server's choice otherwise."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///") :]).parent / ARTIFACTS_DIRNAME).as_uri()
    return None


def is_remote(tracking_uri: str) -> bool:
    """Whether the URI is a tracking server reached over HTTP(S)."""
    return tracking_uri.startswith(("http://", "https://"))


def server_reachable(tracking_uri: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to an HTTP(S) tracking server opens within ``timeout`` seconds.

    A plain socket probe, so an unreachable server costs seconds rather than MLflow's retry back-off.
    Non-HTTP URIs (databases) count as reachable: their errors surface on first use.
    """
    if not is_remote(tracking_uri):
        return True
    url = urlparse(tracking_uri)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


# bounded HTTP: MLflow's defaults (120 s timeout, 7 retries with back-off) froze training for minutes when a
# server stopped answering; these make a dead server known within seconds. An environment value still wins.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def bound_http_requests() -> None:
    """Set MLflow's HTTP timeout and retries to :data:`HTTP_LIMITS` unless the environment sets them."""
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for other stores."""
    return Path(tracking_uri[len("sqlite:///") :]) if tracking_uri.startswith("sqlite:///") else None


class StoreUnusable(Exception):
    """The tracking store cannot be opened or written (corrupt file, read-only folder, server error)."""


def open_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` on a store that answered one request.

    A new SQLite store is created (schema migrations) under a file lock beside the database, so two trainings
    that start together on a fresh store do not race in MLflow's migration.

    Raises:
        StoreUnusable: the store cannot be opened (unreachable server, corrupt or unwritable database).
    """
    import mlflow
    from filelock import FileLock, Timeout

    quiet_mlflow()
    bound_http_requests()
    path = sqlite_path(tracking_uri)
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(path) + ".lock", timeout=300):
                client = mlflow.MlflowClient(tracking_uri=tracking_uri)
                client.search_experiments(max_results=1)  # creates and migrates the schema
                _check_writable(path)
        else:
            client = mlflow.MlflowClient(tracking_uri=tracking_uri)
            client.search_experiments(max_results=1)
    except (Exception, Timeout) as error:
        raise StoreUnusable(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    return client


def _check_writable(db_path: Path) -> None:
    """A SQLite file that opens read-only would fail on the first write: find out now."""
    import sqlite3

    connection = sqlite3.connect(str(db_path), timeout=30)
    try:
        connection.execute("BEGIN IMMEDIATE")  # takes the write lock: fails on a read-only file or folder
        connection.rollback()
    finally:
        connection.close()


def fresh_store_uri(near: str | Path | None = None) -> str:
    """A new local SQLite store for a run whose store failed: ``<near>/mlflow/mlflow.db`` when that folder is
    writable, else a new temporary folder."""
    import tempfile
    import time

    candidates = [Path(near) / "mlflow"] if near else []
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            return sqlite_uri(folder / f"mlflow-{time.strftime('%Y%m%d-%H%M%S')}.db")
        except OSError:
            continue
    return sqlite_uri(Path(tempfile.mkdtemp(prefix="medseg-mlflow-")) / STORE_FILENAME)


def dispose(tracking_uri: str) -> None:
    """Close MLflow's cached SQLAlchemy engine of a SQLite store (open file handles, a locked file on Windows)."""
    if sqlite_path(tracking_uri) is None:
        return
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        store = _tracking_store_registry.get_store(tracking_uri)
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()
    except Exception:  # disposal is tidying only
        pass


@contextlib.contextmanager
def fluent_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (``mlflow.start_run``, ``mlflow.pytorch.log_model``) at ``tracking_uri`` for a
    while, then back. ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in the environment, which
    medseg reads to resolve the store: restoring it exactly keeps the next run where it belongs."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # None unsets both the fluent URI and the environment variable


def quiet_mlflow() -> None:
    """Keep MLflow's INFO chatter (database migrations, run links) and its warnings out of a training log."""
    for name in ("mlflow", "alembic", "alembic.runtime.migration", "sqlalchemy.engine", "urllib3.connectionpool"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # e.g. "Skipping logging of ... as it is not a valid MLflow param", deprecation notes from MLflow internals
    warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
    warnings.filterwarnings("ignore", module=r"(sqlalchemy|alembic)(\.|$)")
    warnings.filterwarnings("ignore", message=r".*``noload`` loader strategy is deprecated")  # SQLAlchemy, via MLflow
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # "View run ... at: URL" lines
