"""SQLAlchemy 2 ORM models of the registry (the Alembic migrations create the same tables)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC on every engine (SQLite stores no zone and hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("registry timestamps must be timezone-aware")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class RegisteredModelRow(Base):
    __tablename__ = "mlops_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersionRow(Base):
    __tablename__ = "mlops_model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_version_number"),
        UniqueConstraint("model_id", "dag_id", "run_id", "task_id", name="uq_version_per_task_run"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("mlops_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    artifact_uri: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    flavor: Mapped[str] = mapped_column(String(40))
    task: Mapped[str] = mapped_column(String(60))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    datasets: Mapped[dict[str, Any]] = mapped_column(default=dict)
    code_version: Mapped[str | None] = mapped_column(String(100))
    library_versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dag_id: Mapped[str | None] = mapped_column(String(250))
    run_id: Mapped[str | None] = mapped_column(String(250))
    task_id: Mapped[str | None] = mapped_column(String(250))
    created_by: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="active")
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What training it cost (0004): wall_seconds, cpu_seconds, peak_memory_bytes, peak_memory_scope.
    cost: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AliasRow(Base):
    __tablename__ = "mlops_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias", name="uq_alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("mlops_models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasEventRow(Base):
    """Append-only: never updated or deleted."""

    __tablename__ = "mlops_alias_events"
    __table_args__ = (Index("ix_alias_events_model_alias", "model_id", "alias", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("mlops_models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(250))
    reason: Mapped[str] = mapped_column(Text)
    dag_id: Mapped[str | None] = mapped_column(String(250))
    run_id: Mapped[str | None] = mapped_column(String(250))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    approver: Mapped[str | None] = mapped_column(String(250))
    approval_comment: Mapped[str | None] = mapped_column(Text)
    approved_at: Mapped[datetime | None] = mapped_column()


class AliasCursorRow(Base):
    """How far each alias watcher has announced the alias history (the last event id it handed on)."""

    __tablename__ = "mlops_alias_cursors"

    stream: Mapped[str] = mapped_column(String(250), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvaluationRow(Base):
    __tablename__ = "mlops_evaluations"
    __table_args__ = (Index("ix_evaluations_model_version", "model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("mlops_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    slice_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    compared_to_version: Mapped[int | None] = mapped_column(Integer)
    passed: Mapped[bool] = mapped_column(Boolean)
    report_uri: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(250))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # The version's held-out test predictions (0002): calibration for estimated
    # performance and the reference for prediction drift.
    predictions_uri: Mapped[str | None] = mapped_column(Text)
    predictions_sha256: Mapped[str | None] = mapped_column(String(64))
    # What a reviewer signs (0005): group fairness, per-class and calibration or residual diagnostics, and
    # feature importance. NULL in rows written before, read as empty.
    fairness: Mapped[dict[str, Any] | None] = mapped_column()
    diagnostics: Mapped[dict[str, Any] | None] = mapped_column()
    explanations: Mapped[dict[str, Any] | None] = mapped_column()


class DriftRow(Base):
    __tablename__ = "mlops_drift_records"
    __table_args__ = (Index("ix_drift_model", "model_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("mlops_models.id", ondelete="CASCADE"))
    version: Mapped[int | None] = mapped_column(Integer)
    reference_fingerprint: Mapped[str | None] = mapped_column(String(64))
    current_fingerprint: Mapped[str | None] = mapped_column(String(64))
    drift_share: Mapped[float] = mapped_column(Float)
    drifted_columns: Mapped[list[Any]] = mapped_column(default=list)
    passed: Mapped[bool] = mapped_column(Boolean)
    report_uri: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(250))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(20), default="data", server_default="data")  # data | prediction


class ScoringRunRow(Base):
    """One committed batch-inference run (0002): which version scored what, where the manifest is."""

    __tablename__ = "mlops_scoring_runs"
    __table_args__ = (
        UniqueConstraint("model_id", "dag_id", "run_id", name="uq_scoring_run"),
        Index("ix_scoring_runs_model_committed", "model_id", "committed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("mlops_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    manifest_uri: Mapped[str] = mapped_column(Text)
    output_prefix: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float | None] = mapped_column(Float)
    input_fingerprint: Mapped[str | None] = mapped_column(String(64))
    committed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The chunks' summed CPU-seconds and their largest peak memory (0004).
    cpu_seconds: Mapped[float | None] = mapped_column(Float)
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)


class PerformanceRow(Base):
    """Realized (labels joined to predictions) or estimated (CBPE) performance of a version (0002)."""

    __tablename__ = "mlops_performance_records"
    __table_args__ = (Index("ix_performance_model_kind", "model_id", "kind", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("mlops_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # realized | estimated
    dag_id: Mapped[str | None] = mapped_column(String(250))
    run_id: Mapped[str | None] = mapped_column(String(250))
    scoring_run_id: Mapped[str | None] = mapped_column(String(250))
    period_start: Mapped[datetime | None] = mapped_column()
    period_end: Mapped[datetime | None] = mapped_column()
    labels_fingerprint: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)
    labelled_rows: Mapped[int | None] = mapped_column(BigInteger)
    coverage: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    slice_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    bands: Mapped[dict[str, Any]] = mapped_column(default=dict)
    notes: Mapped[list[Any]] = mapped_column(default=list)
    passed: Mapped[bool | None] = mapped_column(Boolean)  # None: no verdict
    summary: Mapped[str] = mapped_column(Text, default="")
    report_uri: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
