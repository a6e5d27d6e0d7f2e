"""The degradation gate: realized performance against absolute thresholds and the model's own test set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import ConfigError
from airflow_mlops.refs import GateResult

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.monitoring.realized import RealizedPerformance

TOLERANCE = 1e-12  # a value exactly at a bound holds it


def degradation_gate(
    config: PipelineConfig, performance: RealizedPerformance, *, reference_metrics: dict[str, Any]
) -> GateResult:
    """`monitoring.thresholds` (absolute) and `monitoring.max_drop` (from the version's own test-set value in
    `reference_metrics`, absolute or relative) on `monitoring.metrics`. With fewer than `monitoring.min_labels`
    labelled predictions there is no verdict: the gate passes and says so (metrics['verdict'] == 'none').
    The policy follows `on_degradation`: 'fail' fails the task; 'retrain' and 'alert' warn and go on."""
    from airflow_mlops.evaluation.metrics import greater_is_better

    monitoring = config.monitoring
    if monitoring is None:
        raise ConfigError(f"{config.pipeline}: the pipeline file has no monitoring: section")
    policy = "fail" if monitoring.on_degradation == "fail" else "warn"
    version = performance.version
    facts = {"version": version, "labelled_rows": performance.labelled_rows, "rows": performance.rows,
             "coverage": performance.coverage, "realized": performance.metrics, "reference": reference_metrics}
    if performance.labelled_rows < monitoring.min_labels:
        return GateResult(
            gate="degradation", passed=True, policy=policy, metrics={**facts, "verdict": "none"},
            summary=(f"no verdict: {performance.labelled_rows} labelled predictions of v{version}, fewer than "
                     f"monitoring.min_labels ({monitoring.min_labels})"),
        )
    failures: list[str] = []
    unknown: list[str] = []
    for metric, bound in monitoring.thresholds.items():
        value = performance.metrics.get(metric)
        if value is None:
            unknown.append(metric)
        elif bound.min is not None and value < bound.min - TOLERANCE:
            failures.append(f"{metric} is {value:.4g}, below the threshold {bound.min:.4g}")
        elif bound.max is not None and value > bound.max + TOLERANCE:
            failures.append(f"{metric} is {value:.4g}, above the threshold {bound.max:.4g}")
    drop = monitoring.max_drop
    if drop is not None:
        for metric in monitoring.metrics or []:
            value, reference = performance.metrics.get(metric), reference_metrics.get(metric)
            if value is None or not isinstance(reference, (int, float)):
                unknown.append(metric)
                continue
            lost = reference - value if greater_is_better(metric) else value - reference
            allowed = drop.amount * abs(reference) if drop.relative else drop.amount
            if lost > allowed + TOLERANCE:
                direction = "dropped" if greater_is_better(metric) else "rose"
                failures.append(f"{metric} {direction} from {reference:.4g} (test set) to {value:.4g}, "
                                f"more than the allowed {allowed:.4g}")
    shown = ", ".join(f"{m} {v:.4g}" for m, v in performance.metrics.items() if isinstance(v, (int, float)))
    basis = f"v{version} on {performance.labelled_rows} labelled predictions ({performance.coverage:.0%} of {performance.rows})"
    summary = (f"{basis}: degraded, {len(failures)} check(s) failed" if failures else f"{basis}: holds ({shown})")
    if unknown:
        summary += f"; not computable: {', '.join(sorted(set(unknown)))}"
    return GateResult(gate="degradation", passed=not failures, policy=policy, summary=summary,
                      metrics={**facts, "verdict": "degraded" if failures else "holds"}, failures=failures)
