"""Drift checks with Evidently 0.7 behind the shared gate contract.

Large-data policy (why this is fast where a plain `DataDriftPreset` is slow):
1. Only the configured columns are read and compared (`drift.columns`, default
   the model's features), plus `prediction` and the target when both sides have them.
2. Above `drift.sample_rows` rows, each side is a seeded random sample
   (`drift.seed`), so the cost no longer grows with the table.
3. The reference side (usually the champion's training data) is sampled once per
   model version and cached in the artifact store, keyed by the reference's
   URI, the columns and the sampling policy; later runs read the small cached
   sample instead of the full reference.
4. One `ValueDrift` per column with its own method and threshold; Evidently's
   defaults (chosen by column type and size) when none are configured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import DataError
from airflow_mlops.refs import GateResult

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.storage import ArtifactStore

PREDICTION = "prediction"


@dataclass
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool

    def sentence(self) -> str:
        return f"{self.column}: drifted ({self.method} score {self.score:.4g}, threshold {self.threshold:.4g})"


@dataclass
class DriftResult:
    gate: GateResult
    record: dict[str, Any]
    drifted_columns: list[str]
    columns: list[ColumnDrift] = field(default_factory=list)


def checked_columns(config: PipelineConfig, reference_columns: list[str], current_columns: list[str]) -> list[str]:
    """The feature columns to compare: configured ones, or every shared column but target and ids."""
    shared = [c for c in current_columns if c in set(reference_columns)]
    drift = config.drift
    if isinstance(drift.columns, list):
        wanted = drift.columns
    elif isinstance(config.data.features, list):
        wanted = config.data.features
    else:
        excluded = {config.data.target, PREDICTION, *config.data.ids}
        wanted = [c for c in shared if c not in excluded and not c.startswith("proba_")]
    missing = [c for c in wanted if c not in shared]
    if missing:
        raise DataError(
            f"drift: column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            "must be in both the reference and the current data"
        )
    if not wanted:
        raise DataError("drift: the reference and the current data share no feature columns")
    return list(wanted)


def _sample(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or len(frame) <= limit:
        return frame
    return frame.sample(n=limit, random_state=seed).reset_index(drop=True)


def _read_columns(uri: str, store: ArtifactStore, columns: list[str]) -> pd.DataFrame:
    from airflow_mlops.data import read_arrow

    return read_arrow(uri, store, columns=columns).to_pandas()


def _available_columns(uri: str, store: ArtifactStore) -> list[str]:
    from airflow_mlops.data import iter_batches

    first = next(iter_batches(uri, store, batch_rows=1), None)
    if first is None:
        raise DataError(f"{store.uri(uri)}: the dataset is empty (0 rows)")
    return list(first.schema.names)


def _frame(source: pd.DataFrame | str, store: ArtifactStore, columns: list[str]) -> pd.DataFrame:
    if isinstance(source, str):
        return _read_columns(source, store, columns)
    return source[columns]


def _cached_reference(
    config: PipelineConfig,
    reference: pd.DataFrame | str,
    store: ArtifactStore,
    columns: list[str],
    cache_key: str | None,
) -> pd.DataFrame:
    """The sampled reference, computed once per (model version, columns, policy) and kept in the store."""
    from airflow_mlops.data import read_table, write_table

    drift = config.drift
    if cache_key is None or not isinstance(reference, str):
        return _sample(_frame(reference, store, columns), drift.sample_rows, drift.seed)
    identity = json.dumps([store.uri(reference), columns, drift.sample_rows, drift.seed])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    path = f"pipelines/{config.pipeline}/drift-reference/{cache_key}/{digest}.parquet"
    if store.exists(path):
        return read_table(path, store)
    sample = _sample(_frame(reference, store, columns), drift.sample_rows, drift.seed)
    write_table(sample, path, store)
    return sample


def _definition(frame: pd.DataFrame, columns: list[str]) -> Any:
    from evidently import DataDefinition

    numeric = [c for c in columns if frame[c].dtype.kind in "iuf"]
    categorical = [c for c in columns if c not in numeric]
    return DataDefinition(numerical_columns=numeric, categorical_columns=categorical)


def _run_evidently(
    config: PipelineConfig, reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]
) -> tuple[Any, list[ColumnDrift]]:
    from evidently import Dataset, Report
    from evidently.metrics import ValueDrift

    drift = config.drift
    metrics = []
    for column in columns:
        override = drift.per_column.get(column)
        method = (override.method if override and override.method else None) or drift.method
        threshold = (override.threshold if override and override.threshold else None) or drift.threshold
        metrics.append(ValueDrift(column=column, method=method, threshold=threshold))
    definition = _definition(reference, columns)
    snapshot = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    data = snapshot.dict()
    scores = {m["config"]["column"]: m for m in data["metrics"]}
    results = []
    for test in data["tests"]:
        params = test["metric_config"]["params"]
        column = params["column"]
        results.append(ColumnDrift(
            column=column,
            method=str(params.get("method")),
            score=float(scores[column]["value"]),
            threshold=float(params.get("threshold")),
            drifted=test["status"] != "SUCCESS",
        ))
    order = {c: i for i, c in enumerate(columns)}
    return snapshot, sorted(results, key=lambda r: order[r.column])


def check_drift(
    config: PipelineConfig,
    reference: pd.DataFrame | str,
    current: pd.DataFrame | str,
    store: ArtifactStore,
    *,
    report_path: str,
    reference_cache_key: str | None = None,
) -> DriftResult:
    """Compare `current` with `reference` (DataFrames or dataset URIs) under the large-data policy."""
    from airflow_mlops.data import fingerprint_table

    drift = config.drift
    reference_columns = _available_columns(reference, store) if isinstance(reference, str) else list(reference.columns)
    current_columns = _available_columns(current, store) if isinstance(current, str) else list(current.columns)
    features = checked_columns(config, reference_columns, current_columns)
    on_both_sides = set(reference_columns) & set(current_columns)
    extras = [config.data.target] if config.data.target in on_both_sides else []  # target drift when labelled
    if drift.prediction and PREDICTION in on_both_sides:
        extras.append(PREDICTION)
    columns = features + [c for c in extras if c not in features]
    reference_frame = _cached_reference(config, reference, store, columns, reference_cache_key)
    current_frame = _sample(_frame(current, store, columns), drift.sample_rows, drift.seed)
    if reference_frame.empty or current_frame.empty:
        raise DataError("drift: the reference or the current data has no rows")
    snapshot, results = _run_evidently(config, reference_frame, current_frame, columns)

    feature_results = [r for r in results if r.column in features]
    drifted = [r for r in feature_results if r.drifted]
    share = len(drifted) / len(feature_results)
    dataset_drifted = share >= drift.drift_share
    extra_failures = [r.sentence() for r in results if r.column not in features and r.drifted]
    summary = (
        f"{len(drifted)} of {len(feature_results)} columns drifted ({share:.0%}); the dataset "
        f"{'drifts' if dataset_drifted else 'does not drift'} (threshold {drift.drift_share:.0%} of columns)"
    )
    report = _save_report(snapshot, store, report_path)
    policy = "fail" if drift.on_drift == "fail" else "warn"
    gate = GateResult(
        gate="drift",
        passed=not dataset_drifted,
        policy=policy,
        summary=summary,
        metrics={
            "drift_share": share,
            "drifted_columns": [r.column for r in drifted],
            "n_columns": len(feature_results),
            "reference_rows": len(reference_frame),
            "current_rows": len(current_frame),
            "columns": {
                r.column: {"method": r.method, "score": r.score, "threshold": r.threshold, "drifted": r.drifted}
                for r in results
            },
        },
        failures=[r.sentence() for r in drifted] + extra_failures,
        report=report,
    )
    record = {
        "drift_share": share,
        "drifted_columns": [r.column for r in drifted],
        "passed": not dataset_drifted,
        "reference_fingerprint": fingerprint_table(reference_frame),
        "current_fingerprint": fingerprint_table(current_frame),
        "report_uri": report.uri,
    }
    return DriftResult(gate=gate, record=record, drifted_columns=[r.column for r in drifted], columns=results)


def _save_report(snapshot: Any, store: ArtifactStore, report_path: str) -> Any:
    with store.staging_file(report_path, suffix=".html") as temp:
        snapshot.save_html(temp)
        return store.write_file(report_path, temp, move=True)
