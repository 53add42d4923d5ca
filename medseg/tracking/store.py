"""Where MLflow runs go: the default SQLite store, URI resolution and reachability.

Resolution order for the tracking URI (first that is set wins):

1. an explicit value (a bundle override such as ``--tracking_uri URI``, or ``medseg compare --tracking_uri``);
2. the ``MLFLOW_TRACKING_URI`` environment variable;
3. ``sqlite:///$MEDSEG_HOME/mlflow.db`` with ``MEDSEG_HOME`` defaulting to ``~/.medseg``.

Artifacts of a local SQLite store live in ``mlartifacts/`` beside the database file.
Nothing here imports MLflow, so the CLI stays fast.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from pathlib import Path
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
    db_path.parent.mkdir(parents=True, exist_ok=True)
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
