"""Real servers on localhost for the tracking tests: ``mlflow server`` and PostgreSQL (started and stopped here).

PostgreSQL: ``MEDSEG_TEST_POSTGRES_URI`` (set by ``.ci/run``, which starts one) is used as it is; otherwise a
throw-away cluster is made with ``initdb`` in a temporary folder and started with ``pg_ctl`` on a free port (as the
``postgres`` user via ``runuser`` when the tests run as root: PostgreSQL refuses to run as root). Where that is
impossible the caller skips with the reason :func:`postgres_unavailable` gives.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

MLFLOW_CLI = Path(sys.executable).with_name("mlflow")
POSTGRES_ENV = "MEDSEG_TEST_POSTGRES_URI"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(backend_uri: str, folder: Path) -> Iterator[str]:
    """``mlflow server`` with ``backend_uri`` and ``--artifacts-destination folder/artifacts``; yields its URL."""
    port = free_port()
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [
            str(MLFLOW_CLI),
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=folder,  # MLflow may create ./mlruns for its Default experiment: keep it out of the checkout
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def postgres_unavailable() -> str | None:
    """Why no PostgreSQL test server can be had here, or None when it can."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed: pip install 'medseg[server]'"
    if os.environ.get(POSTGRES_ENV):
        return None
    if _postgres_bin() is None:
        return "PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it when run as root)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without runuser: PostgreSQL refuses to run as root"
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    return None


@contextlib.contextmanager
def postgres(database: str = "mlflow") -> Iterator[str]:
    """A PostgreSQL database on localhost; yields its SQLAlchemy URI (``postgresql+psycopg2://...``)."""
    given = os.environ.get(POSTGRES_ENV)
    if given:
        yield given
        return
    binaries = _postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="medseg-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, text=True, timeout=120)

    run(str(binaries / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    run(
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(folder / "postgres.log"),
        "-w",
        "-t",
        "60",
        "start",
    )
    try:
        run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", database)
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(
            [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)
