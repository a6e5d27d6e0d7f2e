"""What happened to the registry's versions: evaluations, drift checks, batch scoring runs and performance."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from airflow_mlops.errors import RegistryError
from airflow_mlops.registry.base import RegistryBase
from airflow_mlops.registry.convert import RecordT, to_record
from airflow_mlops.registry.models import (
    DriftRow,
    EvaluationRow,
    PerformanceRow,
    ScoringRunRow,
    utcnow,
)
from airflow_mlops.registry.records import (
    DriftRecord,
    EvaluationRecord,
    PerformanceRecord,
    ScoringRun,
)
from airflow_mlops.registry.statements import equal_or_null

DRIFT_KINDS = ("data", "prediction")
PERFORMANCE_KINDS = ("realized", "estimated")


class RecordedOutcomes(RegistryBase):
    """Evaluations, drift checks, scoring runs and performance records of a model's versions."""

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
        cpu_seconds: float | None = None,
        peak_memory_bytes: int | None = None,
    ) -> ScoringRun:
        """Record a committed batch-inference run of `name` v`version`.

        Idempotent per (model, dag_id, run_id): a retried commit updates the same
        row (the latest commit's manifest and cost win) instead of adding a second one.
        `cpu_seconds`, `peak_memory_bytes`: the chunks' summed CPU time and largest peak memory.
        """
        values = {
            "version": version, "manifest_uri": manifest_uri, "output_prefix": output_prefix, "rows": int(rows),
            "seconds": None if seconds is None else float(seconds), "input_fingerprint": input_fingerprint,
            "committed_at": committed_at or utcnow(),
            "cpu_seconds": None if cpu_seconds is None else float(cpu_seconds),
            "peak_memory_bytes": None if peak_memory_bytes is None else int(peak_memory_bytes),
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
