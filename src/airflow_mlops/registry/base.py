"""What every part of the registry shares: the engines, the schema check, sessions and row lookups."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.orm import Session

from airflow_mlops.errors import NotFoundError, RegistryError
from airflow_mlops.registry.engine import default_registry_url, registry_engine
from airflow_mlops.registry.models import AliasRow, ModelVersionRow, RegisteredModelRow, utcnow

_READY: set[str] = set()


class RegistryBase:
    """The database side of `ModelRegistry`: engines (a writer, and an autocommit reader for
    single-statement reads), the schema check, sessions and the lookups every operation starts with."""

    def __init__(self, url: str | None = None, *, upgrade: bool | None = None) -> None:
        self.url = url or default_registry_url()
        self.engine = registry_engine(self.url)
        self._writer = self.engine.execution_options(mlops_write=True)
        # Single-statement reads need no transaction: no BEGIN/ROLLBACK round trips.
        self._reader = registry_engine(self.url, autocommit=True)
        if self.url not in _READY:
            self._ensure_schema(self.url.startswith("sqlite") if upgrade is None else upgrade)

    def _ensure_schema(self, upgrade: bool) -> None:
        from airflow_mlops.registry import migrate

        head = migrate.head_revision()
        if migrate.current_revision(self.engine) != head:
            if not upgrade:
                raise RegistryError(
                    f"the registry database {self.engine.url.render_as_string(hide_password=True)} is not at "
                    f"schema {head}; run `airflow-mlops db upgrade --db URL`"
                )
            migrate.upgrade(self.engine)
        _READY.add(self.url)

    # ------------------------------------------------------------------ sessions

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    @staticmethod
    def _model(session: Session, name: str, *, lock: bool = False) -> RegisteredModelRow:
        query = select(RegisteredModelRow).where(RegisteredModelRow.name == name)
        row = session.scalars(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFoundError(f"no registered model named {name!r}")
        return row

    @staticmethod
    def _model_for_write(session: Session, name: str) -> RegisteredModelRow:
        query = select(RegisteredModelRow).where(RegisteredModelRow.name == name).with_for_update()
        row = session.scalars(query).first()
        if row is not None:
            return row
        try:
            with session.begin_nested():
                session.add(RegisteredModelRow(name=name, description="", tags={}, created_at=utcnow()))
        except SqlIntegrityError:
            pass  # created by a concurrent writer; lock theirs
        return session.scalars(query).one()

    @staticmethod
    def _aliases_by_version(session: Session, model_id: int) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for row in session.scalars(select(AliasRow).where(AliasRow.model_id == model_id).order_by(AliasRow.alias)):
            found.setdefault(row.version, []).append(row.alias)
        return found

    def _version_row(self, session: Session, model: RegisteredModelRow, version: int) -> ModelVersionRow:
        row = session.scalars(
            select(ModelVersionRow).where(ModelVersionRow.model_id == model.id, ModelVersionRow.version == version)
        ).first()
        if row is None:
            raise NotFoundError(f"model {model.name!r} has no version {version}")
        return row
