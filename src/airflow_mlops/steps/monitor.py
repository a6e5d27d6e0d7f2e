"""Monitoring after deployment: realized and estimated performance, prediction drift."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import window_timedelta
from airflow_mlops.errors import ConfigError, NotFoundError
from airflow_mlops.refs import GateResult
from airflow_mlops.steps.common import alias_version, checked_location, test_metrics
from airflow_mlops.steps.results import Estimated, Lineage, Monitored, PredictionDriftChecked, Watch

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.registry import ModelRegistry, PerformanceRecord
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)


def _monitoring(config: PipelineConfig) -> Any:
    if config.monitoring is None:
        raise ConfigError(f"{config.pipeline}: the pipeline file has no monitoring: section")
    return config.monitoring


def stored_test_predictions(registry: ModelRegistry, name: str, version: int) -> tuple[str, str | None] | None:
    """(uri, sha256) of the version's held-out test predictions, from its latest evaluation that stored
    them; None when the version was evaluated before they were stored."""
    stored = [e for e in registry.evaluations(name, version) if e.predictions_uri]
    if not stored:
        return None
    return stored[-1].predictions_uri, stored[-1].predictions_sha256


def _verified(store: ArtifactStore, name: str, version: int, uri: str, sha256: str | None) -> str:
    from airflow_mlops.errors import DataError

    if sha256 and store.sha256(uri) != sha256:
        raise DataError(
            f"{name} v{version}: the stored test predictions {uri} changed after evaluation "
            "(sha256 differs from the registry's); re-run the evaluation to store them again"
        )
    return uri


def _not_stored(name: str, version: int) -> str:
    return (f"{name} v{version} has no stored test predictions (evaluated before monitoring existed); "
            "retrain or re-evaluate it to enable this check")


def monitor_performance(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    labels_uri: str | None,
    window: str | None,
    run_id: str,
    dag_id: str,
    report_path: str,
) -> Monitored:
    """Join the labels to the batch outputs committed within the window; record realized performance per
    version; gate the champion's against its own test-set metrics (`monitoring.thresholds`, `max_drop`)."""
    from airflow_mlops.monitoring import ScoredBatch, degradation_gate, realized_performance

    monitoring = _monitoring(config)
    name = config.pipeline
    labels = labels_uri or monitoring.labels
    if not labels:
        raise ConfigError(f"{name}: monitoring.labels is empty; trigger the monitor with the labels' location")
    checked_location(labels, "monitoring labels")
    span = window_timedelta(window or monitoring.window)
    since = datetime.now(timezone.utc) - span
    try:
        runs = registry.scoring_runs(name, since=since, limit=10_000)
    except NotFoundError:
        runs = []
    champion = alias_version(registry, name, config.promotion.alias)
    if not runs:
        gate = GateResult(
            gate="degradation", passed=True, policy=_policy(monitoring.on_degradation),
            summary=f"no verdict: no batch output of {name} was committed in the last {window or monitoring.window}",
            metrics={"verdict": "none"},
        )
        return _monitored(config, gate, champion, [], labels)
    batches = [
        ScoredBatch(run_id=r.run_id, version=r.version, manifest_uri=r.manifest_uri, committed_at=r.committed_at)
        for r in sorted(runs, key=lambda r: r.committed_at)
    ]
    performances = realized_performance(config, batches, labels, store)
    gate: GateResult | None = None
    gated = champion if champion is not None and any(p.version == champion for p in performances) else None
    records = []
    for performance in performances:
        passed, summary, report_uri = None, "", None
        if performance.version == gated:
            reference = test_metrics(registry, name, gated)
            gate = degradation_gate(config, performance, reference_metrics=reference)
            if gate.report is None:
                gate = gate.model_copy(update={"report": _write_report(store, report_path, gate, performance)})
            if gate.metrics.get("verdict") != "none":
                passed = gate.passed
            summary, report_uri = gate.summary, gate.report.uri if gate.report else None
        else:
            why = "not the champion" if champion is not None else f"no '{config.promotion.alias}' to gate"
            summary = f"v{performance.version}: recorded without a verdict ({why})"
        kwargs = {"kind": "realized", **performance.to_record()}
        if kwargs.get("scoring_run_id") is None and len(performance.scoring_run_ids) == 1:
            kwargs["scoring_run_id"] = performance.scoring_run_ids[0]
        kwargs.update(dag_id=dag_id, run_id=run_id, passed=passed, summary=summary, report_uri=report_uri)
        records.append(registry.record_performance(name, performance.version, **kwargs))
    if gate is None:
        what = f"champion v{champion}" if champion is not None else f"any '{config.promotion.alias}'"
        gate = GateResult(
            gate="degradation", passed=True, policy=_policy(monitoring.on_degradation),
            summary=f"no verdict: no labelled prediction of {what} in the window; "
                    f"{len(records)} version(s) recorded without one",
            metrics={"verdict": "none"},
        )
    log.info("monitor %s: %s", name, gate.summary)
    return _monitored(config, gate, gated if gated is not None else champion, records, labels)


def _monitored(config: PipelineConfig, gate: GateResult, version: int | None, records: list[PerformanceRecord],
               labels: str) -> Monitored:
    gated = [r for r in records if r.version == version]
    fail = _monitoring(config).on_degradation == "fail"
    return Monitored(
        gate=gate, degraded=not gate.passed, version=version, summary=gate.summary,
        records=[r.to_dict() for r in records],
        lineage=Lineage(inputs=[labels], metrics=gated[0].metrics if gated else None, metrics_split="realized"),
        watch=Watch(event="degradation", headline="performance degraded", fail=fail),
    )


def _policy(on_degradation: str) -> str:
    return "fail" if on_degradation == "fail" else "warn"


def _write_report(store: ArtifactStore, path: str, gate: GateResult, performance: Any) -> Any:
    """A small HTML page of the verdict: the summary, each failure and the metrics, overall and per slice."""
    import html
    import json

    e = html.escape
    failures = "".join(f"<li>{e(line)}</li>" for line in gate.failures) or "<li>none</li>"
    body = (
        f"<!doctype html><meta charset='utf-8'><title>{e(gate.gate)}</title>"
        f"<h1>Realized performance of v{performance.version}</h1><p>{e(gate.summary)}</p>"
        f"<p>{performance.labelled_rows} labelled of {performance.rows} scored rows "
        f"(coverage {performance.coverage if performance.coverage is not None else 'n/a'}), "
        f"scoring runs: {e(', '.join(performance.scoring_run_ids))}</p>"
        f"<h2>Failed checks</h2><ul>{failures}</ul>"
        f"<h2>Metrics</h2><pre>{e(json.dumps(performance.metrics, indent=2, default=str))}</pre>"
        f"<h2>Slices</h2><pre>{e(json.dumps(performance.slice_metrics, indent=2, default=str))}</pre>"
        f"<h2>Notes</h2><pre>{e(chr(10).join(map(str, performance.notes)))}</pre>"
    )
    return store.write_bytes(path, body.encode())


def estimate_batch_performance(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    manifest_uri: str,
    version: int,
    run_id: str,
    dag_id: str,
) -> Estimated:
    """Estimate the batch's performance before labels arrive (CBPE, calibrated on the version's test
    predictions); recorded as 'estimated' with the batch's run id as its scoring run."""
    _monitoring(config)
    name = config.pipeline
    stored = stored_test_predictions(registry, name, version)
    if stored is None:
        summary = f"not estimated: {_not_stored(name, version)}"
        log.warning("%s", summary)
        return Estimated(estimated=False, summary=summary)
    from airflow_mlops.monitoring import estimate_performance

    estimate = estimate_performance(config, manifest_uri, _verified(store, name, version, *stored), store)
    kwargs = {"kind": "estimated", **estimate.to_record()}
    kwargs.update(dag_id=dag_id, run_id=run_id, scoring_run_id=run_id)
    if not kwargs.get("summary"):
        kwargs["summary"] = _estimate_summary(estimate)
    record = registry.record_performance(name, version, **kwargs)
    log.info("estimate %s v%s: %s", name, version, record.summary)
    return Estimated(estimated=bool(estimate.estimated), summary=record.summary, record=record.to_dict(),
                     lineage=Lineage(inputs=[_output_prefix(manifest_uri)], metrics=record.metrics,
                                     metrics_split="estimated"))


def _output_prefix(manifest_uri: str) -> str:
    return manifest_uri.rsplit("/", 1)[0]


def _estimate_summary(estimate: Any) -> str:
    if not estimate.estimated:
        return "not estimated: " + ("; ".join(map(str, estimate.notes)) or "no estimate for this task")
    shown = []
    for metric, value in estimate.metrics.items():
        band = (estimate.bands or {}).get(metric)
        low_high = f" [{band[0]:.4g}, {band[1]:.4g}]" if isinstance(band, (list, tuple)) and len(band) == 2 else ""
        shown.append(f"{metric} {value:.4g}{low_high}" if isinstance(value, (int, float)) else f"{metric} n/a")
    return f"estimated on {estimate.rows} rows: " + ", ".join(shown)


def check_batch_prediction_drift(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    manifest_uri: str,
    version: int,
    run_id: str,
    report_path: str,
) -> PredictionDriftChecked:
    """Compare the batch's predictions with the version's test predictions; record it as 'prediction' drift."""
    name = config.pipeline
    stored = stored_test_predictions(registry, name, version)
    if stored is None:
        summary = f"prediction drift not checked: {_not_stored(name, version)}"
        log.warning("%s", summary)
        return PredictionDriftChecked(checked=False, drifted=False, summary=summary)
    from airflow_mlops.drift import check_prediction_drift

    reference, sha256 = stored
    result = check_prediction_drift(config, reference, manifest_uri, store, report_path=report_path,
                                    reference_sha256=sha256)
    registry.record_drift(name, version=version, run_id=run_id, kind="prediction", **result.record)
    gate: GateResult = result.gate
    return PredictionDriftChecked(
        checked=True, drifted=not gate.passed, summary=gate.summary, gate=gate,
        drifted_columns=list(result.drifted_columns), lineage=Lineage(inputs=[_output_prefix(manifest_uri)]),
        watch=Watch(event="drift", headline="prediction drift detected", fail=config.drift.on_drift == "fail"),
    )
