"""Plain records the registry returns: detached from any session, safe to pass around."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


class _Record:
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 strings."""
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ModelVersion(_Record):
    name: str
    version: int
    artifact_uri: str
    artifact_sha256: str
    flavor: str
    task: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    datasets: dict[str, Any]
    code_version: str | None
    library_versions: dict[str, Any]
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    created_by: str | None
    created_at: datetime
    status: str
    tags: dict[str, Any]
    aliases: list[str] = field(default_factory=list)
    cost: dict[str, Any] = field(default_factory=dict)  # training cost; empty for versions registered before 0004



@dataclass(frozen=True)
class RegisteredModel(_Record):
    name: str
    description: str
    tags: dict[str, Any]
    created_at: datetime
    latest_version: int | None
    aliases: dict[str, int]



@dataclass(frozen=True)
class AliasEvent(_Record):
    name: str
    alias: str
    kind: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    dag_id: str | None
    run_id: str | None
    at: datetime
    event_id: int = 0
    approver: str | None = None
    approval_comment: str | None = None
    approved_at: datetime | None = None

    @property
    def is_move(self) -> bool:
        """False for recorded decisions (a rejection, a refused approval, a timeout) that moved nothing."""
        return self.kind in MOVE_KINDS


MOVE_KINDS = ("set", "rollback", "delete")
"""Alias history kinds that changed where an alias points; the others record approval decisions."""
DECISION_KINDS = ("rejected", "approval_refused", "approval_timeout")


@dataclass(frozen=True)
class Approval:
    """A person's approval of a promotion, written on the alias history row of the move it allowed."""

    approver: str
    comment: str | None
    at: datetime


@dataclass(frozen=True)
class EvaluationRecord(_Record):
    name: str
    version: int
    dataset_fingerprint: str | None
    metrics: dict[str, Any]
    slice_metrics: dict[str, Any]
    compared_to_version: int | None
    passed: bool
    report_uri: str | None
    run_id: str | None
    at: datetime
    predictions_uri: str | None = None
    predictions_sha256: str | None = None
    fairness: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    explanations: dict[str, Any] = field(default_factory=dict)



@dataclass(frozen=True)
class DriftRecord(_Record):
    name: str
    version: int | None
    reference_fingerprint: str | None
    current_fingerprint: str | None
    drift_share: float
    drifted_columns: list[Any]
    passed: bool
    report_uri: str | None
    run_id: str | None
    at: datetime
    kind: str = "data"


@dataclass(frozen=True)
class ScoringRun(_Record):
    """A committed batch-inference run: the version that scored it and where its manifest is."""

    name: str
    version: int
    dag_id: str
    run_id: str
    manifest_uri: str
    output_prefix: str
    rows: int
    seconds: float | None
    input_fingerprint: str | None
    committed_at: datetime
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None

    @property
    def cpu_seconds_per_million_rows(self) -> float | None:
        from airflow_mlops.cost import cpu_seconds_per_million_rows

        return cpu_seconds_per_million_rows(self.cpu_seconds, self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "cpu_seconds_per_million_rows": self.cpu_seconds_per_million_rows}


@dataclass(frozen=True)
class PerformanceRecord(_Record):
    """Realized or estimated performance of one version (`passed` None: no verdict)."""

    name: str
    version: int
    kind: str
    dag_id: str | None
    run_id: str | None
    scoring_run_id: str | None
    period_start: datetime | None
    period_end: datetime | None
    labels_fingerprint: str | None
    rows: int
    labelled_rows: int | None
    coverage: float | None
    metrics: dict[str, Any]
    slice_metrics: dict[str, Any]
    bands: dict[str, Any]
    notes: list[Any]
    passed: bool | None
    summary: str
    report_uri: str | None
    at: datetime
