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
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.orm import Session

from airflow_mlops.errors import ConflictError, NotFoundError, RegistryError
from airflow_mlops.registry.base import RegistryBase
from airflow_mlops.registry.convert import approval_columns, to_record
from airflow_mlops.registry.models import (
    AliasCursorRow,
    AliasEventRow,
    AliasRow,
    ModelVersionRow,
    RegisteredModelRow,
    utcnow,
)
from airflow_mlops.registry.outcomes import RecordedOutcomes
from airflow_mlops.registry.pages import PageReads
from airflow_mlops.registry.records import (
    DECISION_KINDS,
    MOVE_KINDS,
    AliasEvent,
    Approval,
    ModelVersion,
    RegisteredModel,
)
from airflow_mlops.registry.statements import alias_moves, hot_statements, json_equals, json_type_is
from airflow_mlops.settings import CODE_VERSION_ENV

UNCHECKED: Any = object()
"""`set_alias(expected_version=UNCHECKED)`: move the alias whatever it points at now."""

_MODEL_IDS: dict[tuple[str, str], int] = {}  # models are never deleted, so ids never go stale



def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")

class ModelRegistry(RecordedOutcomes, PageReads, RegistryBase):
    """The model registry on any SQLAlchemy database (SQLite embedded by default).

    :param url: SQLAlchemy URL; None = `<artifact root>/registry.db`.
    :param upgrade: apply migrations on first use; default: yes for SQLite, no
        elsewhere (production databases are upgraded with `airflow-mlops db upgrade`).
    """

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
        cost: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Register the next version of `name` (the model is created on first use).

        Idempotent per (dag_id, run_id, task_id): the same task of the same run
        gets the version it registered before, so an Airflow retry never makes
        a duplicate. `cost`: what training it cost (see `airflow_mlops.cost`).
        """
        if code_version is None:
            code_version = _git_sha()
        statements = hot_statements(self.engine.dialect.name)
        values = {
            "artifact_uri": artifact_uri, "artifact_sha256": artifact_sha256, "flavor": flavor, "task": task,
            "params": params or {}, "metrics": metrics or {}, "datasets": datasets or {},
            "code_version": code_version, "library_versions": library_versions or {}, "dag_id": dag_id,
            "run_id": run_id, "task_id": task_id, "created_by": _actor(created_by), "status": "active",
            "tags": tags or {}, "cost": cost,
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

    def set_version_cost(self, name: str, version: int, cost: dict[str, Any]) -> ModelVersion:
        """Replace the version's training cost (a retried training task's measurement replaces the first)."""
        with self._write() as session:
            model = self._model(session, name, lock=True)
            self._version_row(session, model, version).cost = dict(cost)
        return self.get_version(name, version)

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
