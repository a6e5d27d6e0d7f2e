"""The registry's hot SQL, built once per dialect: version lookups and inserts, alias moves, JSON filters."""

from __future__ import annotations

import functools
import json
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, bindparam, func, select

from airflow_mlops.registry.models import AliasRow, ModelVersionRow, RegisteredModelRow


@functools.lru_cache(maxsize=4)
def hot_statements(dialect: str = "sqlite") -> SimpleNamespace:
    """Hot statements built once, so SQLAlchemy's compiled cache serves every call."""
    versions, models, aliases = ModelVersionRow.__table__, RegisteredModelRow.__table__, AliasRow.__table__
    held = aliases.alias("held")

    def fetch(by_alias: bool) -> Any:
        # Scalar subqueries pin the lookups to the unique indexes, whatever the planner's statistics say.
        model_id = select(models.c.id).where(models.c.name == bindparam("name")).scalar_subquery()
        if by_alias:
            version = select(aliases.c.version).where(
                aliases.c.model_id == model_id, aliases.c.alias == bindparam("alias")
            ).scalar_subquery()
        else:
            version = bindparam("version")
        return (
            select(versions, held.c.alias.label("held_alias"))
            .where(versions.c.model_id == model_id, versions.c.version == version)
            .outerjoin(held, and_(held.c.model_id == versions.c.model_id, held.c.version == versions.c.version))
        )

    return SimpleNamespace(
        by_alias=fetch(True),
        by_version=fetch(False),
        model_id=select(models.c.id).where(models.c.name == bindparam("name")),
        insert_model=models.insert(),
        by_run=select(versions.c.version).where(
            versions.c.model_id == bindparam("model_id"), versions.c.dag_id == bindparam("dag_id"),
            versions.c.run_id == bindparam("run_id"), versions.c.task_id == bindparam("task_id"),
        ),
        insert_next=_insert_next_version(versions, dialect),
    )


def _insert_next_version(versions: Any, dialect: str) -> Any:
    """INSERT ... SELECT max(version) + 1 ... RETURNING version: numbering and insert in one statement.

    Two writers that pick the same number collide on the unique constraint and
    the loser retries, so no lock and no extra round trip is needed.
    """
    from sqlalchemy import cast, literal_column

    columns = [c.name for c in versions.c if c.name != "id"]
    values = []
    for name in columns:
        column = versions.c[name]
        if name == "version":
            values.append(func.coalesce(func.max(versions.c.version), 0) + literal_column("1"))
        elif name == "model_id":
            values.append(bindparam("model_id", type_=column.type))
        elif dialect == "postgresql" and name in JSON_COLUMNS:
            values.append(cast(bindparam(name, type_=column.type), column.type))
        else:
            values.append(bindparam(name, type_=column.type))
    source = select(*values).where(versions.c.model_id == bindparam("model_id"))
    return versions.insert().from_select(columns, source).returning(versions.c.version)


JSON_COLUMNS = {"params", "metrics", "datasets", "library_versions", "tags", "cost"}

_ALIAS_STATE = """
    SELECT (SELECT status FROM mlops_model_versions WHERE model_id = :model_id AND version = :version) AS status,
           (SELECT version FROM mlops_aliases WHERE model_id = :model_id AND alias = :alias) AS current
"""
_MOVE_ALLOWED = "state.status = 'active' AND (:unchecked OR state.current IS NOT DISTINCT FROM :expected)"
_UPSERT_ALIAS = """
    INSERT INTO mlops_aliases (model_id, alias, version, updated_at) {source}
    ON CONFLICT (model_id, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at
"""
_INSERT_EVENT = """
    INSERT INTO mlops_alias_events (model_id, alias, kind, from_version, to_version, actor, reason, dag_id, run_id,
                                    at, approver, approval_comment, approved_at) {source}
"""
_EVENT_VALUES = (":model_id, :alias, :kind, {current}, :version, :actor, :reason, :dag_id, :run_id, :now, :approver, "
                 ":approval_comment, :approved_at")


@functools.lru_cache(maxsize=4)
def alias_moves(dialect: str) -> SimpleNamespace:
    """An alias move in as few round trips as the engine allows, after the model's row is locked.

    PostgreSQL: one statement reads the target's status and the alias, and (when the move is allowed)
    upserts the alias and appends the history row, returning what it read and the event id. SQLite has
    no data-modifying CTEs, but it runs in-process: three statements inside BEGIN IMMEDIATE.
    """
    from sqlalchemy import text

    from airflow_mlops.registry.models import UTCDateTime

    def typed(statement: str) -> Any:
        # Timestamps bind through the registry's UTC type, as the ORM writes them.
        stamps = [bindparam(name, type_=UTCDateTime()) for name in ("now", "approved_at") if f":{name}" in statement]
        return text(statement).bindparams(*stamps)

    if dialect == "postgresql":
        statement = typed(
            f"WITH state AS ({_ALIAS_STATE}), "
            f"moved AS ({_UPSERT_ALIAS.format(source=f'SELECT :model_id, :alias, :version, :now FROM state WHERE {_MOVE_ALLOWED}')} RETURNING 1), "
            f"event AS ({_INSERT_EVENT.format(source='SELECT ' + _EVENT_VALUES.format(current='state.current') + ' FROM state, moved')} RETURNING id) "
            "SELECT state.status, state.current, (SELECT id FROM event) FROM state"
        )

        def move(connection: Any, values: dict[str, Any]) -> tuple[Any, Any, Any]:
            return tuple(connection.execute(statement, values).one())

        lock = text("SELECT id FROM mlops_models WHERE id = :model_id FOR UPDATE")
    else:
        state = text(_ALIAS_STATE)
        upsert = typed(_UPSERT_ALIAS.format(source="VALUES (:model_id, :alias, :version, :now)"))
        insert = typed(_INSERT_EVENT.format(source="VALUES (" + _EVENT_VALUES.format(current=":current") + ")")
                       + " RETURNING id")

        def move(connection: Any, values: dict[str, Any]) -> tuple[Any, Any, Any]:
            status, current = connection.execute(state, values).one()
            allowed = status == "active" and (values["unchecked"] or current == values["expected"])
            if not allowed:
                return status, current, None
            connection.execute(upsert, values)
            return status, current, connection.execute(insert, {**values, "current": current}).scalar_one()

        lock = text("SELECT id FROM mlops_models WHERE id = :model_id")
    return SimpleNamespace(lock=lock, move=move)


def equal_or_null(column: Any, value: Any) -> Any:
    """`column = value`, where None matches NULL (SQL's `=` never does)."""
    return column.is_(None) if value is None else column == value


def json_equals(column: Any, key: str, value: Any, dialect: str) -> Any:
    """`column[key]` equal to `value`, compared as its own type (a tag "3" is not the number 3); the type
    is checked first, so PostgreSQL never casts a value of another type."""
    element = column[key]
    if dialect == "postgresql":
        # The stored JSON text of the value against the value's JSON text: one cheap comparison, typed.
        from sqlalchemy import Text, cast

        return cast(column.op("->")(key), Text) == json.dumps(value)
    if isinstance(value, bool):
        return and_(json_type_is(column, key, dialect, "boolean"), element.as_boolean() == value)
    if isinstance(value, int | float):
        return and_(json_type_is(column, key, dialect, "number"), element.as_float() == float(value))
    return and_(json_type_is(column, key, dialect, "string"), element.as_string() == str(value))


_SQLITE_JSON_TYPES = {"boolean": ("true", "false"), "number": ("integer", "real"), "string": ("text",)}


def json_type_is(column: Any, key: str, dialect: str, kind: str) -> Any:
    if dialect == "postgresql":
        return func.json_typeof(column[key]) == kind
    return func.json_type(column, f'$."{key}"').in_(_SQLITE_JSON_TYPES[kind])
