"""Engines for the registry's database: one per URL and mode, SQLite tuned for concurrent writers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from airflow_mlops.errors import RegistryError

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def default_registry_url() -> str:
    """The embedded registry: `<artifact root>/registry.db` (SQLite)."""
    from airflow_mlops.storage import artifact_root

    root = artifact_root()
    if root.startswith("s3://"):
        raise RegistryError(
            f"the artifact root {root} is on S3, where no embedded SQLite registry can live; "
            "configure the registry's database (the mlops_registry connection, or --db URL)"
        )
    Path(root).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(root) / 'registry.db'}"


def _sqlite_pragmas(engine: Engine, *, transactions: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        # WAL + NORMAL never corrupts; a power cut can lose the last commits, not the file.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if not transactions:
        return  # the autocommit engine: every statement is its own transaction

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front, so read-then-write can never interleave.
        immediate = connection.get_execution_options().get("mlops_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def registry_engine(url: str, *, autocommit: bool = False) -> Engine:
    """One engine per URL and mode; the autocommit engine serves single-statement reads."""
    key = f"{url}#autocommit" if autocommit else url
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
            if url.startswith("sqlite"):
                engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, **options)
                _sqlite_pragmas(engine, transactions=not autocommit)
            else:
                # pool_recycle instead of pre-ping: a ping per checkout would double every read's round trips.
                engine = create_engine(url, pool_recycle=1800, pool_size=5, max_overflow=40, **options)
            _ENGINES[key] = engine
        return engine
