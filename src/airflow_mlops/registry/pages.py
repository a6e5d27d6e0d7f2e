"""Bounded reads for the registry pages: a page of models or versions in a fixed number of queries,
whatever the number of versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from airflow_mlops.registry.base import RegistryBase
from airflow_mlops.registry.convert import to_record
from airflow_mlops.registry.models import (
    AliasRow,
    DriftRow,
    EvaluationRow,
    ModelVersionRow,
    RegisteredModelRow,
)
from airflow_mlops.registry.records import (
    DriftRecord,
    EvaluationRecord,
    ModelVersion,
    RegisteredModel,
)


class PageReads(RegistryBase):
    """Batch lookups by model id and keyset pages, so a page costs the same with 100 or 100,000 versions."""

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
