"""A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks.

`running_postgres()` runs initdb into a temporary folder, starts the server on
a free port with pg_ctl, yields a base SQLAlchemy URL and removes everything
afterwards. As root, the server runs as the `postgres` user (PostgreSQL refuses
root). Pytest fixtures: `postgres_server` (session) and `postgres_url` (a fresh
database per test). Load with `-p airflow_mlops.testing.postgres`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SUPERUSER = "mlops"


def find_pg_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a private PostgreSQL; yields `postgresql+psycopg2://mlops@127.0.0.1:PORT/`."""
    pg_bin = find_pg_bin()
    if pg_bin is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found; `make test` installs them")
    folder = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    log = folder / "server.log"
    subprocess.run(
        _as_server_user([str(pg_bin / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"]),
        check=True, capture_output=True, timeout=120,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_server_user([str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]),
        check=True, capture_output=True, timeout=90,
    )
    url = f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{port}/"
    try:
        _wait_ready(url + "postgres")
        yield url
    finally:
        subprocess.run(
            _as_server_user([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True, timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(url: str, timeout: float = 30.0) -> None:
    import sqlalchemy

    deadline = time.monotonic() + timeout
    engine = sqlalchemy.create_engine(url)
    try:
        while True:
            try:
                with engine.connect():
                    return
            except sqlalchemy.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        engine.dispose()


def create_database(base_url: str) -> str:
    """A new empty database on the server; returns its URL."""
    import sqlalchemy

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(base_url + "postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return base_url + name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed (make test installs them)")
    with running_postgres() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    return create_database(postgres_server)
