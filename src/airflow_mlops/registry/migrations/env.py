"""Alembic environment of the registry; run through `airflow_mlops.registry.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from airflow_mlops.registry.models import Base

VERSION_TABLE = "mlops_alembic_version"


def run_migrations() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            _run(connection)
        return
    _run(connection)


def _run(connection) -> None:  # alembic hands over a Connection
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
