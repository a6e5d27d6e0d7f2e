"""`ModelRegistry`: versions with lineage, aliases with an append-only history, rollback.

Every write is one transaction. Per model, writers serialise on the model's row
(`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so version
numbers never repeat or skip and an alias move is a true compare-and-set.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.orm import Session, aliased

from airflow_mlops.errors import ConflictError, NotFoundError, RegistryError
from airflow_mlops.registry.convert import RecordT, approval_columns, to_record
from airflow_mlops.registry.engine import default_registry_url, registry_engine
from airflow_mlops.registry.models import (
    AliasCursorRow,
    AliasEventRow,
    AliasRow,
    DriftRow,
    EvaluationRow,
    ModelVersionRow,
    PerformanceRow,
    RegisteredModelRow,
    ScoringRunRow,
    utcnow,
)
from airflow_mlops.registry.records import (
    DECISION_KINDS,
    MOVE_KINDS,
    AliasEvent,
    Approval,
    DriftRecord,
    EvaluationRecord,
    ModelVersion,
    PerformanceRecord,
    RegisteredModel,
    ScoringRun,
)
from airflow_mlops.registry.statements import (
    alias_moves,
    equal_or_null,
    hot_statements,
    json_equals,
    json_type_is,
)
from airflow_mlops.settings import CODE_VERSION_ENV

UNCHECKED: Any = object()
"""`set_alias(expected_version=UNCHECKED)`: move the alias whatever it points at now."""

_READY: set[str] = set()
_MODEL_IDS: dict[tuple[str, str], int] = {}  # models are never deleted, so ids never go stale


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


class ModelRegistry:
    """The model registry on any SQLAlchemy database (SQLite embedded by default).

    :param url: SQLAlchemy URL; None = `<artifact root>/registry.db`.
    :param upgrade: apply migrations on first use; default: yes for SQLite, no
        elsewhere (production databases are upgraded with `airflow-mlops db upgrade`).
    """

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

    # ------------------------------------------------------------------ versions

    def register_version(
        self,
        name: str,
        *,
        artifact_uri: str,
        artifact_sha256: str,
        flavor: str,
        task: str,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        datasets: dict[str, Any] | None = None,
        code_version: str | None = None,
        library_versions: dict[str, Any] | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
        created_by: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Register the next version of `name` (the model is created on first use).

        Idempotent per (dag_id, run_id, task_id): the same task of the same run
        gets the version it registered before, so an Airflow retry never makes
        a duplicate.
        """
        if code_version is None:
            code_version = _git_sha()
        statements = hot_statements(self.engine.dialect.name)
        values = {
            "artifact_uri": artifact_uri, "artifact_sha256": artifact_sha256, "flavor": flavor, "task": task,
            "params": params or {}, "metrics": metrics or {}, "datasets": datasets or {},
            "code_version": code_version, "library_versions": library_versions or {}, "dag_id": dag_id,
            "run_id": run_id, "task_id": task_id, "created_by": _actor(created_by), "status": "active",
            "tags": tags or {},
        }
        for attempt in range(50):
            if attempt:
                time.sleep(random.uniform(0, 0.002 * attempt))  # spread colliding writers apart
            try:
                with self._reader.connect() as connection:
                    model_id = self._model_id(connection, name)
                    if dag_id and run_id and task_id:
                        existing = connection.execute(statements.by_run, {
                            "model_id": model_id, "dag_id": dag_id, "run_id": run_id, "task_id": task_id}).scalar()
                        if existing is not None:
                            break
                    row = {**values, "model_id": model_id, "created_at": utcnow()}
                    number = connection.execute(statements.insert_next, row).scalar_one()
                    return to_record(ModelVersion, SimpleNamespace(**row, version=number), name=name)
            except SqlIntegrityError:
                continue  # a concurrent registration won the number or the run; read again
        else:
            raise RegistryError(f"could not register a version of {name!r}: too much contention, try again")
        return self.get_version(name, existing)

    @staticmethod
    def _by_run(session: Session, model: RegisteredModelRow, dag_id: str, run_id: str, task_id: str) -> ModelVersionRow | None:
        return session.scalars(
            select(ModelVersionRow).where(
                ModelVersionRow.model_id == model.id,
                ModelVersionRow.dag_id == dag_id,
                ModelVersionRow.run_id == run_id,
                ModelVersionRow.task_id == task_id,
            )
        ).first()

    def find_version_by_run(self, name: str, dag_id: str, run_id: str, task_id: str) -> ModelVersion | None:
        """The version a given task of a given run registered, if any."""
        with self._read() as session:
            try:
                model = self._model(session, name)
            except NotFoundError:
                return None
            row = self._by_run(session, model, dag_id, run_id, task_id)
            if row is None:
                return None
            return to_record(ModelVersion, row, name=name, aliases=self._aliases_by_version(session, model.id).get(row.version, []))

    def _model_id(self, connection: Any, name: str) -> int:
        """The model's id, creating the model on first use (autocommit connection)."""
        key = (self.url, name)
        if key in _MODEL_IDS:
            return _MODEL_IDS[key]
        statements = hot_statements(self.engine.dialect.name)
        model_id = connection.execute(statements.model_id, {"name": name}).scalar()
        if model_id is None:
            with contextlib.suppress(SqlIntegrityError):  # created by a concurrent writer
                connection.execute(
                    statements.insert_model, {"name": name, "description": "", "tags": {}, "created_at": utcnow()}
                )
            model_id = connection.execute(statements.model_id, {"name": name}).scalar_one()
        _MODEL_IDS[key] = model_id
        return model_id

    def _fetch(self, name: str, *, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """One round trip: the version (by number or alias) with every alias it holds."""
        statements = hot_statements(self.engine.dialect.name)
        with self._reader.connect() as connection:
            if alias is not None:
                rows = connection.execute(statements.by_alias, {"name": name, "alias": alias}).all()
            else:
                rows = connection.execute(statements.by_version, {"name": name, "version": version}).all()
        if not rows:
            with self._read() as session:
                model = self._model(session, name)
                if alias is not None:
                    raise NotFoundError(f"model {name!r} has no alias {alias!r}")
                self._version_row(session, model, version or 0)
        held_aliases = sorted(r.held_alias for r in rows if r.held_alias is not None)
        return to_record(ModelVersion, rows[0], name=name, aliases=held_aliases)

    def versions_from_run(self, dag_id: str, run_id: str) -> list[ModelVersion]:
        """The versions an Airflow DAG run registered, of any model, oldest first."""
        with self._read() as session:
            rows = session.execute(
                select(ModelVersionRow, RegisteredModelRow.name)
                .join(RegisteredModelRow, RegisteredModelRow.id == ModelVersionRow.model_id)
                .where(ModelVersionRow.dag_id == dag_id, ModelVersionRow.run_id == run_id)
                .order_by(RegisteredModelRow.name, ModelVersionRow.version)
            ).all()
            return [
                to_record(ModelVersion, row, name=name, aliases=self._aliases_by_version(session, row.model_id).get(row.version, []))
                for row, name in rows
            ]

    def get_version(self, name: str, version: int) -> ModelVersion:
        return self._fetch(name, version=version)

    def resolve(self, name: str, alias: str) -> ModelVersion:
        """The version `alias` points at (NotFoundError when the alias is not set)."""
        return self._fetch(name, alias=alias)

    def list_models(self) -> list[RegisteredModel]:
        with self._read() as session:
            models = session.scalars(select(RegisteredModelRow).order_by(RegisteredModelRow.name)).all()
            latest = dict(
                session.execute(
                    select(ModelVersionRow.model_id, func.max(ModelVersionRow.version)).group_by(ModelVersionRow.model_id)
                ).all()
            )
            aliases: dict[int, dict[str, int]] = {}
            for row in session.scalars(select(AliasRow).order_by(AliasRow.alias)):
                aliases.setdefault(row.model_id, {})[row.alias] = row.version
            return [
                RegisteredModel(
                    name=m.name,
                    description=m.description,
                    tags=dict(m.tags or {}),
                    created_at=m.created_at,
                    latest_version=latest.get(m.id),
                    aliases=aliases.get(m.id, {}),
                )
                for m in models
            ]

    def search_versions(
        self,
        name: str | None = None,
        *,
        tags: dict[str, Any] | None = None,
        status: str | None = None,
        alias: str | None = None,
        min_metrics: dict[str, float] | None = None,
        max_metrics: dict[str, float] | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[ModelVersion]:
        """Versions matching every filter, oldest first (`newest_first` for the reverse), each with its aliases.

        Filters and paging (`limit`, `offset`) run in the database, so a model with 100,000 versions is
        paged, not loaded. Tag filters compare JSON values by type; metric filters drop versions that
        lack the metric or hold a non-number.
        """
        if limit is not None and limit < 1 or offset < 0:
            raise RegistryError(f"search_versions: limit must be at least 1 and offset at least 0, not {limit}/{offset}")
        dialect = self.engine.dialect.name
        query = select(ModelVersionRow, RegisteredModelRow.name).join(
            RegisteredModelRow, RegisteredModelRow.id == ModelVersionRow.model_id
        )
        if name is not None:
            # A scalar subquery pins the model to its id, so the (model_id, version) index serves the page
            # whatever the planner's statistics say (a join by name made PostgreSQL scan every version).
            model_id = select(RegisteredModelRow.id).where(RegisteredModelRow.name == name).scalar_subquery()
            query = query.where(ModelVersionRow.model_id == model_id)
        if status is not None:
            query = query.where(ModelVersionRow.status == status)
        if alias is not None:
            query = query.join(AliasRow, and_(AliasRow.model_id == ModelVersionRow.model_id,
                                              AliasRow.version == ModelVersionRow.version, AliasRow.alias == alias))
        for key, value in (tags or {}).items():
            query = query.where(json_equals(ModelVersionRow.tags, key, value, dialect))
        for bounds, above in ((min_metrics, True), (max_metrics, False)):
            for key, value in (bounds or {}).items():
                metric = ModelVersionRow.metrics[key]
                query = query.where(json_type_is(ModelVersionRow.metrics, key, dialect, "number"),
                                    metric.as_float() >= value if above else metric.as_float() <= value)
        # With one model, order by version alone so the (model_id, version) index serves the page.
        by_version = ModelVersionRow.version.desc() if newest_first else ModelVersionRow.version
        order = (by_version,) if name is not None else (RegisteredModelRow.name, by_version)
        query = query.order_by(*order).offset(offset).limit(limit)
        with self._read() as session:
            rows = session.execute(query).all()
            model_ids = {row.model_id for row, _ in rows}
            alias_map: dict[tuple[int, int], list[str]] = {}
            if rows:
                held = select(AliasRow).where(
                    AliasRow.model_id.in_(model_ids), AliasRow.version.in_({row.version for row, _ in rows})
                )
                for held_alias in session.scalars(held.order_by(AliasRow.alias)):
                    alias_map.setdefault((held_alias.model_id, held_alias.version), []).append(held_alias.alias)
        return [to_record(ModelVersion, row, name=model_name, aliases=alias_map.get((row.model_id, row.version), []))
                for row, model_name in rows]

    def archive_version(self, name: str, version: int, *, actor: str | None = None) -> ModelVersion:
        """Mark a version archived; refused while an alias points at it."""
        with self._write() as session:
            model = self._model(session, name, lock=True)
            row = self._version_row(session, model, version)
            held = self._aliases_by_version(session, model.id).get(version, [])
            if held:
                raise RegistryError(
                    f"{name} v{version} holds the alias{'es' if len(held) > 1 else ''} {', '.join(held)}; "
                    "move or delete the alias before archiving the version"
                )
            row.status = "archived"
            row.tags = {**(row.tags or {}), "archived_by": _actor(actor)}
            return to_record(ModelVersion, row, name=name)

    def set_version_tags(self, name: str, version: int, tags: dict[str, Any]) -> ModelVersion:
        with self._write() as session:
            model = self._model(session, name, lock=True)
            row = self._version_row(session, model, version)
            row.tags = {**(row.tags or {}), **tags}
            return to_record(ModelVersion, row, name=name, aliases=self._aliases_by_version(session, model.id).get(version, []))

    # ------------------------------------------------------------------- aliases

    def aliases(self, name: str) -> dict[str, int]:
        with self._read() as session:
            model = self._model(session, name)
            rows = session.scalars(select(AliasRow).where(AliasRow.model_id == model.id).order_by(AliasRow.alias))
            return {row.alias: row.version for row in rows}

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        expected_version: int | None = UNCHECKED,
        actor: str | None = None,
        reason: str = "",
        dag_id: str | None = None,
        run_id: str | None = None,
        kind: str = "set",
        approval: Approval | None = None,
    ) -> AliasEvent:
        """Point `alias` at `version`, recording who, why, from which run and who approved it.

        `expected_version` makes it a compare-and-set: the alias must point at that
        version now (None: must not exist yet), else `ConflictError` and nothing changes.
        """
        if not alias or not alias.replace("_", "").replace("-", "").isalnum():
            raise RegistryError(f"alias {alias!r}: use letters, digits, _ and -")
        moves = alias_moves(self.engine.dialect.name)
        now = utcnow()
        values = {
            "alias": alias, "version": version, "kind": kind, "actor": _actor(actor), "reason": reason,
            "dag_id": dag_id, "run_id": run_id, "now": now, "unchecked": expected_version is UNCHECKED,
            "expected": None if expected_version is UNCHECKED else expected_version,
            "approver": None, "approval_comment": None, "approved_at": None, **approval_columns(approval),
        }
        with self._writer.begin() as connection:
            values["model_id"] = model_id = self._existing_model_id(connection, name)
            # Writers of one model serialise on its row (SQLite: BEGIN IMMEDIATE already did).
            connection.execute(moves.lock, {"model_id": model_id})
            status, current, event_id = moves.move(connection, values)
            if status is None:
                raise NotFoundError(f"model {name!r} has no version {version}")
            if status != "active":
                raise RegistryError(f"{name} v{version} is {status}; only active versions can hold an alias")
            if event_id is None:
                raise ConflictError(
                    f"{name} '{alias}' points at {_v(current)}, not {_v(expected_version)} as expected: "
                    "it moved since it was read; nothing was changed"
                )
        return AliasEvent(
            name=name, alias=alias, kind=kind, from_version=current, to_version=version, actor=values["actor"],
            reason=reason, dag_id=dag_id, run_id=run_id, at=now, event_id=event_id, approver=values["approver"],
            approval_comment=values["approval_comment"], approved_at=values["approved_at"],
        )

    def _existing_model_id(self, connection: Any, name: str) -> int:
        key = (self.url, name)
        if key not in _MODEL_IDS:
            model_id = connection.execute(hot_statements(self.engine.dialect.name).model_id, {"name": name}).scalar()
            if model_id is None:
                raise NotFoundError(f"no registered model named {name!r}")
            _MODEL_IDS[key] = model_id
        return _MODEL_IDS[key]

    def record_alias_decision(
        self,
        name: str,
        alias: str,
        candidate_version: int,
        *,
        kind: str,
        actor: str | None,
        reason: str,
        approval: Approval | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
    ) -> AliasEvent:
        """Append a decision that moved nothing (a rejection, a refused approval, a timeout) to the history.

        `from_version` is where the alias points now and `to_version` the version that was proposed.
        """
        if kind not in DECISION_KINDS:
            raise RegistryError(f"alias decision kind {kind!r}: expected one of {', '.join(DECISION_KINDS)}")
        with self._write() as session:
            model = self._model(session, name, lock=True)
            current = session.scalars(
                select(AliasRow.version).where(AliasRow.model_id == model.id, AliasRow.alias == alias)
            ).first()
            event_row = AliasEventRow(
                model_id=model.id, alias=alias, kind=kind, from_version=current, to_version=candidate_version,
                actor=_actor(actor), reason=reason, dag_id=dag_id, run_id=run_id, at=utcnow(),
                **approval_columns(approval),
            )
            session.add(event_row)
            session.flush()
            return to_record(AliasEvent, event_row, name=name, event_id=event_row.id)

    def delete_alias(self, name: str, alias: str, *, actor: str | None = None, reason: str = "") -> AliasEvent:
        with self._write() as session:
            model = self._model(session, name, lock=True)
            current = session.scalars(
                select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.alias == alias)
            ).first()
            if current is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}")
            event_row = AliasEventRow(
                model_id=model.id, alias=alias, kind="delete", from_version=current.version, to_version=None,
                actor=_actor(actor), reason=reason, dag_id=None, run_id=None, at=utcnow(),
            )
            session.delete(current)
            session.add(event_row)
            session.flush()
            return to_record(AliasEvent, event_row, name=name, event_id=event_row.id)

    def rollback(
        self,
        name: str,
        alias: str,
        *,
        reason: str,
        actor: str | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
    ) -> ModelVersion:
        """Move `alias` back to the version it held before its latest change that is still in effect.

        Rollbacks undo in order: after v1 -> v2 -> v3, one rollback gives v2 and a
        second gives v1 (a rollback is never itself the change that is undone).
        """
        if not reason.strip():
            raise RegistryError("a rollback needs a reason; it is recorded in the alias history")
        events = [e for e in self.history(name, alias) if e.is_move]
        if not events or events[-1].to_version is None:
            raise RegistryError(f"{name} '{alias}' is not set; there is nothing to roll back")
        target = _rollback_target(events)
        if target is None:
            raise RegistryError(f"{name} '{alias}' has no earlier version in its history to roll back to")
        self.set_alias(
            name, alias, target, expected_version=events[-1].to_version, actor=actor, reason=reason,
            dag_id=dag_id, run_id=run_id, kind="rollback",
        )
        return self.get_version(name, target)

    def rollback_targets(self, name: str) -> dict[str, int | None]:
        """For each alias that is set, the version `rollback` would move it to (None: no earlier version)."""
        by_alias: dict[str, list[AliasEvent]] = {}
        for event_record in self.history(name):
            if event_record.is_move:
                by_alias.setdefault(event_record.alias, []).append(event_record)
        return {alias: _rollback_target(events) for alias, events in by_alias.items() if events[-1].to_version is not None}

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Alias events, oldest first (all aliases when `alias` is None)."""
        with self._read() as session:
            model = self._model(session, name)
            query = select(AliasEventRow).where(AliasEventRow.model_id == model.id)
            if alias is not None:
                query = query.where(AliasEventRow.alias == alias)
            return [to_record(AliasEvent, row, name=name, event_id=row.id) for row in session.scalars(query.order_by(AliasEventRow.id))]

    def alias_moves_after(
        self, name: str, after_event_id: int, *, aliases: list[str] | None = None, limit: int = 100
    ) -> list[AliasEvent]:
        """Moves of `name`'s aliases (all, or those in `aliases`) with an event id above `after_event_id`,
        oldest first: what an alias watcher has not handed on yet. An unknown model has none."""
        with self._read() as session:
            model = session.scalars(select(RegisteredModelRow).where(RegisteredModelRow.name == name)).first()
            if model is None:
                return []
            query = select(AliasEventRow).where(
                AliasEventRow.model_id == model.id, AliasEventRow.id > after_event_id,
                AliasEventRow.kind.in_(MOVE_KINDS),
            )
            if aliases is not None:
                query = query.where(AliasEventRow.alias.in_(aliases))
            return [to_record(AliasEvent, row, name=name, event_id=row.id) for row in session.scalars(query.order_by(AliasEventRow.id).limit(limit))]

    def last_alias_event_id(self, name: str, *, before: datetime | None = None) -> int:
        """The newest history event id of `name` (recorded before `before`, when given); 0 when none."""
        with self._read() as session:
            query = (
                select(func.max(AliasEventRow.id))
                .join(RegisteredModelRow, RegisteredModelRow.id == AliasEventRow.model_id)
                .where(RegisteredModelRow.name == name)
            )
            if before is not None:
                query = query.where(AliasEventRow.at < before)
            return int(session.scalar(query) or 0)

    def alias_cursor(self, stream: str) -> int | None:
        """The last event id the watcher `stream` handed on, or None when it never ran."""
        with self._read() as session:
            return session.scalar(select(AliasCursorRow.last_event_id).where(AliasCursorRow.stream == stream))

    def set_alias_cursor(self, stream: str, event_id: int) -> None:
        """Record that the watcher `stream` has handed on every event up to `event_id` (never moves back)."""
        with self._write() as session:
            row = session.get(AliasCursorRow, stream)
            if row is None:
                session.add(AliasCursorRow(stream=stream, last_event_id=event_id, updated_at=utcnow()))
            elif event_id > row.last_event_id:
                row.last_event_id, row.updated_at = event_id, utcnow()

    # ------------------------------------------------------- evaluations, drift

    def record_evaluation(
        self,
        name: str,
        version: int,
        *,
        metrics: dict[str, Any],
        passed: bool,
        dataset_fingerprint: str | None = None,
        slice_metrics: dict[str, Any] | None = None,
        compared_to_version: int | None = None,
        report_uri: str | None = None,
        run_id: str | None = None,
        predictions_uri: str | None = None,
        predictions_sha256: str | None = None,
        fairness: dict[str, Any] | None = None,
        diagnostics: dict[str, Any] | None = None,
        explanations: dict[str, Any] | None = None,
    ) -> EvaluationRecord:
        """`predictions_uri`/`_sha256`: the version's stored held-out test predictions, if any; `fairness`,
        `diagnostics`, `explanations`: what `evaluate_candidate` found beside the metrics."""
        with self._write() as session:
            model = self._model(session, name)
            self._version_row(session, model, version)
            row = EvaluationRow(
                model_id=model.id, version=version, dataset_fingerprint=dataset_fingerprint, metrics=metrics,
                slice_metrics=slice_metrics or {}, compared_to_version=compared_to_version, passed=passed,
                report_uri=report_uri, run_id=run_id, at=utcnow(), predictions_uri=predictions_uri,
                predictions_sha256=predictions_sha256, fairness=fairness or {}, diagnostics=diagnostics or {},
                explanations=explanations or {},
            )
            session.add(row)
            session.flush()
            return to_record(EvaluationRecord, row, name=name)

    def evaluations(self, name: str, version: int | None = None) -> list[EvaluationRecord]:
        """Evaluations, oldest first (of one version when `version` is given)."""
        return self._history(name, EvaluationRow, EvaluationRecord, version=version)

    def record_drift(
        self,
        name: str,
        *,
        drift_share: float,
        drifted_columns: list[Any],
        passed: bool,
        version: int | None = None,
        reference_fingerprint: str | None = None,
        current_fingerprint: str | None = None,
        report_uri: str | None = None,
        run_id: str | None = None,
        kind: str = "data",
    ) -> DriftRecord:
        """`kind`: 'data' (the model's inputs) or 'prediction' (its outputs against its test predictions)."""
        if kind not in DRIFT_KINDS:
            raise RegistryError(f"drift kind {kind!r}: expected one of {', '.join(DRIFT_KINDS)}")
        with self._write() as session:
            model = self._model_for_write(session, name)
            row = DriftRow(
                model_id=model.id, version=version, reference_fingerprint=reference_fingerprint,
                current_fingerprint=current_fingerprint, drift_share=drift_share, drifted_columns=drifted_columns,
                passed=passed, report_uri=report_uri, run_id=run_id, at=utcnow(), kind=kind,
            )
            session.add(row)
            session.flush()
            return to_record(DriftRecord, row, name=name)

    def drift_records(self, name: str, *, kind: str | None = None, limit: int | None = None) -> list[DriftRecord]:
        """Drift records, oldest first (every kind when `kind` is None; the newest `limit` when given)."""
        return self._history(name, DriftRow, DriftRecord, kind=kind, limit=limit)

    # ------------------------------------------------------------ monitoring

    def record_scoring_run(
        self,
        name: str,
        version: int,
        *,
        dag_id: str,
        run_id: str,
        manifest_uri: str,
        output_prefix: str,
        rows: int,
        seconds: float | None = None,
        input_fingerprint: str | None = None,
        committed_at: datetime | None = None,
    ) -> ScoringRun:
        """Record a committed batch-inference run of `name` v`version`.

        Idempotent per (model, dag_id, run_id): a retried commit updates the same
        row (the latest commit's manifest wins) instead of adding a second one.
        """
        values = {
            "version": version, "manifest_uri": manifest_uri, "output_prefix": output_prefix, "rows": int(rows),
            "seconds": None if seconds is None else float(seconds), "input_fingerprint": input_fingerprint,
            "committed_at": committed_at or utcnow(),
        }
        with self._write() as session:
            model = self._model(session, name, lock=True)
            self._version_row(session, model, version)
            row = session.scalars(
                select(ScoringRunRow).where(
                    ScoringRunRow.model_id == model.id, ScoringRunRow.dag_id == dag_id, ScoringRunRow.run_id == run_id
                )
            ).first()
            if row is None:
                row = ScoringRunRow(model_id=model.id, dag_id=dag_id, run_id=run_id, **values)
                session.add(row)
            else:
                for key, value in values.items():
                    setattr(row, key, value)
            session.flush()
            return to_record(ScoringRun, row, name=name)

    def scoring_runs(self, name: str, *, since: datetime | None = None, limit: int = 200) -> list[ScoringRun]:
        """Committed batch-inference runs, newest first; `since`: committed at or after it."""
        with self._read() as session:
            model = self._model(session, name)
            query = select(ScoringRunRow).where(ScoringRunRow.model_id == model.id)
            if since is not None:
                query = query.where(ScoringRunRow.committed_at >= since)
            query = query.order_by(ScoringRunRow.committed_at.desc(), ScoringRunRow.id.desc()).limit(limit)
            return [to_record(ScoringRun, row, name=name) for row in session.scalars(query)]

    def record_performance(
        self,
        name: str,
        version: int,
        *,
        kind: str,
        rows: int,
        metrics: dict[str, Any],
        dag_id: str | None = None,
        run_id: str | None = None,
        scoring_run_id: str | None = None,
        period_start: datetime | None = None,
        period_end: datetime | None = None,
        labels_fingerprint: str | None = None,
        labelled_rows: int | None = None,
        coverage: float | None = None,
        slice_metrics: dict[str, Any] | None = None,
        bands: dict[str, Any] | None = None,
        notes: list[Any] | None = None,
        passed: bool | None = None,
        summary: str = "",
        report_uri: str | None = None,
    ) -> PerformanceRecord:
        """Record realized or estimated performance of `name` v`version` (`passed` None: no verdict).

        With a `run_id`, idempotent per (kind, version, dag_id, run_id, scoring_run_id):
        an Airflow retry replaces the values of the record it wrote before.
        """
        if kind not in PERFORMANCE_KINDS:
            raise RegistryError(f"performance kind {kind!r}: expected one of {', '.join(PERFORMANCE_KINDS)}")
        values = {
            "period_start": period_start, "period_end": period_end, "labels_fingerprint": labels_fingerprint,
            "rows": int(rows), "labelled_rows": None if labelled_rows is None else int(labelled_rows),
            "coverage": None if coverage is None else float(coverage), "metrics": dict(metrics),
            "slice_metrics": dict(slice_metrics or {}), "bands": dict(bands or {}), "notes": list(notes or []),
            "passed": passed, "summary": summary, "report_uri": report_uri, "at": utcnow(),
        }
        with self._write() as session:
            model = self._model(session, name, lock=True)  # serialises the look-up and the insert per model
            self._version_row(session, model, version)
            row = None
            if run_id is not None:
                row = session.scalars(
                    select(PerformanceRow).where(
                        PerformanceRow.model_id == model.id, PerformanceRow.kind == kind,
                        PerformanceRow.version == version, equal_or_null(PerformanceRow.dag_id, dag_id),
                        PerformanceRow.run_id == run_id, equal_or_null(PerformanceRow.scoring_run_id, scoring_run_id),
                    )
                ).first()
            if row is None:
                row = PerformanceRow(
                    model_id=model.id, version=version, kind=kind, dag_id=dag_id, run_id=run_id,
                    scoring_run_id=scoring_run_id, **values,
                )
                session.add(row)
            else:
                for key, value in values.items():
                    setattr(row, key, value)
            session.flush()
            return to_record(PerformanceRecord, row, name=name)

    def performance_records(
        self, name: str, *, kind: str | None = None, version: int | None = None, limit: int = 500
    ) -> list[PerformanceRecord]:
        """The newest `limit` performance records, returned oldest first (for charts)."""
        return self._history(name, PerformanceRow, PerformanceRecord, limit=limit, kind=kind, version=version)

    def _history(self, name: str, row_type: Any, record_type: type[RecordT], *, limit: int | None = None,
                 **equal: Any) -> list[RecordT]:
        """A model's records of one kind, oldest first: the newest `limit` of them (all when None), filtered
        on each column in `equal` whose value is not None."""
        with self._read() as session:
            model = self._model(session, name)
            query = select(row_type).where(row_type.model_id == model.id)
            for column, value in equal.items():
                if value is not None:
                    query = query.where(getattr(row_type, column) == value)
            rows = list(session.scalars(query.order_by(row_type.id.desc()).limit(limit)))
            return [to_record(record_type, row, name=name) for row in reversed(rows)]

    # ------------------------------------------------------ bounded reads (the UI)
    # A fixed number of statements each, whatever the number of models or versions:
    # the registry pages stay fast with 100,000 versions of a model.

    def models_page(self, *, after: str | None = None, limit: int = 50) -> list[RegisteredModel]:
        """Up to `limit` models named after `after`, by name, each with its aliases and newest version number
        (which is also its number of versions: numbers never skip and versions are never deleted)."""
        # Correlated per model, max() is one step down the (model_id, version) index; grouped, it reads them all.
        latest = (select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == RegisteredModelRow.id)
                  .correlate(RegisteredModelRow).scalar_subquery())
        query = select(RegisteredModelRow, latest).order_by(RegisteredModelRow.name).limit(limit)
        if after is not None:
            query = query.where(RegisteredModelRow.name > after)
        with self._read() as session:
            models = session.execute(query).all()
            aliases: dict[int, dict[str, int]] = {}
            held = select(AliasRow).where(AliasRow.model_id.in_([m.id for m, _ in models])).order_by(AliasRow.alias)
            for row in session.scalars(held):
                aliases.setdefault(row.model_id, {})[row.alias] = row.version
        return [
            RegisteredModel(name=m.name, description=m.description, tags=dict(m.tags or {}), created_at=m.created_at,
                            latest_version=newest, aliases=aliases.get(m.id, {}))
            for m, newest in models
        ]

    def version_window(
        self, name: str, *, limit: int, older_than: int | None = None, newer_than: int | None = None
    ) -> list[ModelVersion]:
        """Up to `limit` versions, newest first: the newest, those just below `older_than`, or those
        just above `newer_than` (keyset paging: the (model_id, version) index serves every page alike)."""
        with self._read() as session:
            model = self._model(session, name)
            query = select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
            if older_than is not None:
                query = query.where(ModelVersionRow.version < older_than)
            if newer_than is not None:
                query = query.where(ModelVersionRow.version > newer_than)
            ascending = newer_than is not None and older_than is None
            order = ModelVersionRow.version if ascending else ModelVersionRow.version.desc()
            rows = list(session.scalars(query.order_by(order).limit(limit)))
            held = self._aliases_by_version(session, model.id)
        return [to_record(ModelVersion, row, name=name, aliases=held.get(row.version, []))
                for row in (reversed(rows) if ascending else rows)]

    def versions_at(self, pairs: set[tuple[str, int]]) -> dict[tuple[str, int], ModelVersion]:
        """The versions named by (model, version) pairs, of any models, in a fixed number of queries
        (missing ones left out)."""
        with self._read() as session:
            ids = self._model_ids(session, {name for name, _ in pairs})
            rows = session.scalars(
                select(ModelVersionRow).where(self._matching_pairs(ModelVersionRow, ids, pairs))
            ).all() if ids else []
            held: dict[tuple[int, int], list[str]] = {}
            for row in session.scalars(select(AliasRow).where(AliasRow.model_id.in_(ids.values()))
                                       .order_by(AliasRow.alias)):
                held.setdefault((row.model_id, row.version), []).append(row.alias)
        names = {model_id: name for name, model_id in ids.items()}
        return {(names[row.model_id], row.version):
                to_record(ModelVersion, row, name=names[row.model_id], aliases=held.get((row.model_id, row.version), []))
                for row in rows}

    def latest_evaluations(self, pairs: set[tuple[str, int]]) -> dict[tuple[str, int], EvaluationRecord]:
        """The latest evaluation of each (model, version) pair that has one, in a fixed number of queries."""
        later = aliased(EvaluationRow)
        newer = select(later.id).where(later.model_id == EvaluationRow.model_id, later.version == EvaluationRow.version,
                                       later.id > EvaluationRow.id).exists()
        with self._read() as session:
            ids = self._model_ids(session, {name for name, _ in pairs})
            rows = session.scalars(
                select(EvaluationRow).where(self._matching_pairs(EvaluationRow, ids, pairs), ~newer)
            ).all() if ids else []
        names = {model_id: name for name, model_id in ids.items()}
        return {(names[row.model_id], row.version): to_record(EvaluationRecord, row, name=names[row.model_id]) for row in rows}

    def newest_passed_version(self, name: str) -> int | None:
        """The newest active version whose latest evaluation passed (None: no such version)."""
        later = aliased(EvaluationRow)
        newer = select(later.id).where(later.model_id == EvaluationRow.model_id, later.version == EvaluationRow.version,
                                       later.id > EvaluationRow.id).exists()
        with self._read() as session:
            model = self._model(session, name)
            # Walks the (model_id, version) index from the newest version: usually a few rows.
            return session.scalar(
                select(EvaluationRow.version)
                .join(ModelVersionRow, and_(ModelVersionRow.model_id == EvaluationRow.model_id,
                                            ModelVersionRow.version == EvaluationRow.version))
                .where(EvaluationRow.model_id == model.id, EvaluationRow.passed.is_(True),
                       ModelVersionRow.status == "active", ~newer)
                .order_by(EvaluationRow.version.desc()).limit(1)
            )

    def recent_evaluations(self, name: str, *, limit: int) -> list[EvaluationRecord]:
        """The evaluations of the newest versions, `limit` at most: by version, then newest first."""
        with self._read() as session:
            model = self._model(session, name)
            # By version first: the (model_id, version) index yields them in order, no sort of every evaluation.
            query = (select(EvaluationRow).where(EvaluationRow.model_id == model.id)
                     .order_by(EvaluationRow.version.desc(), EvaluationRow.id.desc()).limit(limit))
            return [to_record(EvaluationRecord, row, name=name) for row in session.scalars(query)]

    def latest_drift(self, names: list[str]) -> dict[str, DriftRecord]:
        """The latest drift record (any kind) of each named model that has one, in one round trip."""
        newest = (select(func.max(DriftRow.id)).join(RegisteredModelRow, RegisteredModelRow.id == DriftRow.model_id)
                  .where(RegisteredModelRow.name.in_(names)).group_by(DriftRow.model_id))
        with self._read() as session:
            rows = session.execute(
                select(DriftRow, RegisteredModelRow.name)
                .join(RegisteredModelRow, RegisteredModelRow.id == DriftRow.model_id)
                .where(DriftRow.id.in_(newest))
            ).all()
        return {name: to_record(DriftRecord, row, name=name) for row, name in rows}

    @staticmethod
    def _model_ids(session: Session, names: set[str]) -> dict[str, int]:
        if not names:
            return {}
        query = select(RegisteredModelRow.name, RegisteredModelRow.id).where(RegisteredModelRow.name.in_(names))
        return {name: model_id for name, model_id in session.execute(query)}

    @staticmethod
    def _matching_pairs(table: Any, ids: dict[str, int], pairs: set[tuple[str, int]]) -> Any:
        """A filter on (model, version) pairs by model id, one IN list per model: each term an index range."""
        by_id: dict[int, set[int]] = {}
        for name, version in pairs:
            if name in ids:
                by_id.setdefault(ids[name], set()).add(version)
        return or_(*(and_(table.model_id == model_id, table.version.in_(versions))
                     for model_id, versions in by_id.items()))


DRIFT_KINDS = ("data", "prediction")
PERFORMANCE_KINDS = ("realized", "estimated")


def _v(version: int | None) -> str:
    return "nothing" if version is None else f"v{version}"


def _rollback_target(events: list[AliasEvent]) -> int | None:
    """Walking back from the newest event, each rollback cancels the change before it; the first
    change not cancelled is undone, back to the version it replaced."""
    undone = 0
    for event_record in reversed(events):
        if event_record.kind == "rollback":
            undone += 1
        elif undone:
            undone -= 1
        else:
            return event_record.from_version
    return None


def _git_sha() -> str | None:
    """The code version: $AIRFLOW_MLOPS_CODE_VERSION, else the git SHA of the working directory."""
    explicit = os.environ.get(CODE_VERSION_ENV)
    return explicit or _git_head(os.getcwd())


@functools.lru_cache(maxsize=8)
def _git_head(folder: str) -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False, cwd=folder
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
