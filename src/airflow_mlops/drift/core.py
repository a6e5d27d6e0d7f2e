"""Drift checks with Evidently 0.7 behind the shared gate contract.

Large-data policy (why this is fast where a plain `DataDriftPreset` is slow):
1. Only the configured columns are read and compared (`drift.columns`, default
   the model's features), plus the target when both sides have it.
2. Above `drift.sample_rows` rows, each side is a seeded random sample
   (`drift.seed`), drawn while the data streams past batch by batch
   (`stream_sample`), so memory holds the sample and one batch, never the table.
3. The reference side (usually the champion's training data) is sampled once per
   model version and cached in the artifact store, keyed by the reference's
   URI, the columns and the sampling policy; later runs read the small cached
   sample instead of the full reference.
4. One `ValueDrift` per column with its own method and threshold; Evidently's
   defaults (chosen by column type and size) when none are configured.

Prediction drift (`check_prediction_drift`) compares a committed batch output's
`prediction` and `proba_<class>` columns with the model version's stored test-set
predictions, under the same policy; the output is sampled while it is streamed.
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

SAMPLING = "stream-keys-v1"  # part of the cached reference sample's key: a new sampling rule, a new sample
PREDICTION = "prediction"
PROBABILITY_PREFIX = "proba_"  # inference.score.proba_column names them so


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
        wanted = [c for c in shared if c not in excluded and not c.startswith(PROBABILITY_PREFIX)]
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


def stream_sample(uri: str, store: ArtifactStore, columns: list[str], limit: int | None, seed: int, *,
                  batch_rows: int | None = None) -> pd.DataFrame:
    """`columns` of the dataset at `uri`, streamed batch by batch; above `limit` rows, a seeded random
    sample of exactly `limit` rows, in the data's order.

    Every row draws a key from one generator seeded with `seed`, in stream order, and the rows with the
    `limit` smallest keys are the sample: the same data and seed give the same sample whatever the batch
    sizes. Only rows whose key beats the current cut-off are kept, and the kept rows are cut back to
    `limit` whenever they reach twice that, so memory holds at most two samples and one batch.
    """
    import numpy as np
    import pyarrow as pa

    from airflow_mlops.data import iter_batches
    from airflow_mlops.data.io import DEFAULT_BATCH_ROWS

    draws = np.random.default_rng(seed)
    kept = _Kept()
    cutoff = np.inf
    offset = 0
    for batch in iter_batches(uri, store, columns=columns, batch_rows=batch_rows or DEFAULT_BATCH_ROWS):
        keys = draws.random(batch.num_rows)
        chosen = np.arange(batch.num_rows) if limit is None else np.flatnonzero(keys < cutoff)
        if len(chosen):
            kept.add(batch if len(chosen) == batch.num_rows else batch.take(pa.array(chosen)),
                     keys[chosen], chosen + offset)
        offset += batch.num_rows
        if limit is not None and kept.rows >= 2 * limit:
            cutoff = kept.cut(limit)
    if limit is not None and kept.rows > limit:
        kept.cut(limit)
    return kept.table(columns).to_pandas()


class _Kept:
    """Rows kept so far by `stream_sample`, with their keys and positions in the stream."""

    def __init__(self) -> None:
        self.tables: list[Any] = []
        self.keys: list[Any] = []
        self.positions: list[Any] = []
        self.rows = 0

    def add(self, batch: Any, keys: Any, positions: Any) -> None:
        import pyarrow as pa

        self.tables.append(pa.Table.from_batches([batch]))
        self.keys.append(keys)
        self.positions.append(positions)
        self.rows += batch.num_rows

    def cut(self, limit: int) -> float:
        """Keep the `limit` rows with the smallest keys, in stream order; returns the largest key kept."""
        import numpy as np
        import pyarrow as pa

        keys, positions = np.concatenate(self.keys), np.concatenate(self.positions)
        smallest = np.argpartition(keys, limit - 1)[:limit]
        smallest = smallest[np.argsort(positions[smallest], kind="stable")]
        table = pa.concat_tables(self.tables, promote_options="default").take(pa.array(smallest))
        self.tables, self.keys, self.positions = [table], [keys[smallest]], [positions[smallest]]
        self.rows = limit
        return float(keys[smallest].max())

    def table(self, columns: list[str]) -> Any:
        import pyarrow as pa

        if not self.tables:
            return pa.table({column: pa.array([]) for column in columns})
        return pa.concat_tables(self.tables, promote_options="default")


def _available_columns(uri: str, store: ArtifactStore) -> list[str]:
    from airflow_mlops.data import iter_batches

    first = next(iter_batches(uri, store, batch_rows=1), None)
    if first is None:
        raise DataError(f"{store.uri(uri)}: the dataset is empty (0 rows)")
    return list(first.schema.names)


def _sampled(source: pd.DataFrame | str, store: ArtifactStore, columns: list[str], limit: int | None,
             seed: int) -> pd.DataFrame:
    if isinstance(source, str):
        return stream_sample(source, store, columns, limit, seed)
    return _sample(source[columns], limit, seed)


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
        return _sampled(reference, store, columns, drift.sample_rows, drift.seed)
    identity = json.dumps([store.uri(reference), columns, drift.sample_rows, drift.seed, SAMPLING])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    path = f"pipelines/{config.pipeline}/drift-reference/{cache_key}/{digest}.parquet"
    if store.exists(path):
        return read_table(path, store)
    sample = _sampled(reference, store, columns, drift.sample_rows, drift.seed)
    write_table(sample, path, store)
    return sample


def _definition(frame: pd.DataFrame, columns: list[str], categorical: frozenset[str] = frozenset()) -> Any:
    from evidently import DataDefinition

    numeric = [c for c in columns if frame[c].dtype.kind in "iuf" and c not in categorical]
    categorical = [c for c in columns if c not in numeric]
    return DataDefinition(numerical_columns=numeric, categorical_columns=categorical)


def _run_evidently(
    config: PipelineConfig, reference: pd.DataFrame, current: pd.DataFrame, columns: list[str],
    categorical: frozenset[str] = frozenset(),
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
    definition = _definition(reference, columns, categorical)
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
    drift = config.drift
    reference_columns = _available_columns(reference, store) if isinstance(reference, str) else list(reference.columns)
    current_columns = _available_columns(current, store) if isinstance(current, str) else list(current.columns)
    features = checked_columns(config, reference_columns, current_columns)
    on_both_sides = set(reference_columns) & set(current_columns)
    extras = [config.data.target] if config.data.target in on_both_sides else []  # target drift when labelled
    columns = features + [c for c in extras if c not in features]
    reference_frame = _cached_reference(config, reference, store, columns, reference_cache_key)
    current_frame = _sampled(current, store, columns, drift.sample_rows, drift.seed)
    if reference_frame.empty or current_frame.empty:
        raise DataError("drift: the reference or the current data has no rows")
    snapshot, results = _run_evidently(config, reference_frame, current_frame, columns)
    return _drift_result(config, "drift", "the dataset", snapshot, results, set(features), reference_frame, current_frame,
                         store, report_path)


def _drift_result(
    config: PipelineConfig, gate_name: str, subject: str, snapshot: Any, results: list[ColumnDrift], counted: set[str],
    reference_frame: pd.DataFrame, current_frame: pd.DataFrame, store: ArtifactStore, report_path: str,
) -> DriftResult:
    """The gate and the registry record: `subject` drifts when drift.drift_share of the `counted` columns drift;
    the other compared columns (the target) are reported, never counted."""
    from airflow_mlops.data import fingerprint_table

    drift = config.drift
    counted_results = [r for r in results if r.column in counted]
    drifted = [r for r in counted_results if r.drifted]
    share = len(drifted) / len(counted_results)
    subject_drifts = share >= drift.drift_share
    extra_failures = [r.sentence() for r in results if r.column not in counted and r.drifted]
    summary = (
        f"{len(drifted)} of {len(counted_results)} columns drifted ({share:.0%}); {subject} "
        f"{'drifts' if subject_drifts else 'does not drift'} (threshold {drift.drift_share:.0%} of columns)"
    )
    report = _save_report(snapshot, store, report_path)
    policy = "fail" if drift.on_drift == "fail" else "warn"
    gate = GateResult(
        gate=gate_name,
        passed=not subject_drifts,
        policy=policy,
        summary=summary,
        metrics={
            "drift_share": share,
            "drifted_columns": [r.column for r in drifted],
            "n_columns": len(counted_results),
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
        "passed": not subject_drifts,
        "reference_fingerprint": fingerprint_table(reference_frame),
        "current_fingerprint": fingerprint_table(current_frame),
        "report_uri": report.uri,
    }
    return DriftResult(gate=gate, record=record, drifted_columns=[r.column for r in drifted], columns=results)


def prediction_columns(reference_columns: list[str]) -> list[str]:
    """`prediction` and the class probabilities of the stored test predictions; for two classes only the
    second class's (the first is one minus it, and would count the same drift twice)."""
    probabilities = [c for c in reference_columns if c.startswith(PROBABILITY_PREFIX)]
    if PREDICTION not in reference_columns:
        raise DataError(f"prediction drift: the reference test predictions have no {PREDICTION!r} column")
    return [PREDICTION, *(probabilities[1:] if len(probabilities) == 2 else probabilities)]


def sample_committed_output(
    manifest_uri: str, store: ArtifactStore, columns: list[str], limit: int | None, seed: int
) -> pd.DataFrame:
    """`columns` of a committed batch output: only the parts its manifest lists, each verified by its sha256,
    streamed batch by batch, keeping a seeded random sample of `limit` rows (all of them when None).

    The rows to keep are drawn up front from the manifest's row count, so memory holds the sample and one batch.
    """
    import numpy as np
    import pyarrow as pa

    from airflow_mlops.monitoring.outputs import iter_output_batches, read_manifest

    total = int(read_manifest(manifest_uri, store)["total_rows"])
    if total == 0:
        raise DataError(f"prediction drift: the batch output {store.uri(manifest_uri)} has no rows")
    keep = None
    if limit is not None and total > limit:
        keep = np.sort(np.random.default_rng(seed).choice(total, size=limit, replace=False))
    tables = []
    offset = 0
    for batch in iter_output_batches(manifest_uri, store, columns):
        if keep is None:
            tables.append(pa.Table.from_batches([batch]))
        else:
            first, stop = np.searchsorted(keep, [offset, offset + batch.num_rows])
            if stop > first:
                tables.append(pa.Table.from_batches([batch.take(pa.array(keep[first:stop] - offset))]))
        offset += batch.num_rows
    if offset != total:
        raise DataError(f"prediction drift: the parts of {store.uri(manifest_uri)} hold {offset} rows, "
                        f"its manifest says {total}")
    return pa.concat_tables(tables).to_pandas()


def check_prediction_drift(
    config: PipelineConfig,
    reference_predictions_uri: str,
    manifest_uri: str,
    store: ArtifactStore,
    *,
    report_path: str,
    reference_sha256: str | None = None,
) -> DriftResult:
    """Compare a committed batch output's predictions (and probabilities) with the model version's stored
    test-set predictions (`evaluate_candidate` wrote them; with `reference_sha256`, they are verified).

    The output drifts when drift.drift_share of the compared columns drift; `drift.on_drift` sets the policy.
    """
    import pyarrow.parquet as pq

    drift = config.drift
    with store.local_path(reference_predictions_uri, expected_sha256=reference_sha256) as local:
        reference_table = pq.read_table(local)
    columns = prediction_columns(reference_table.column_names)
    reference_frame = _sample(reference_table.select(columns).to_pandas(), drift.sample_rows, drift.seed)
    if reference_frame.empty:
        raise DataError(f"prediction drift: the reference test predictions {store.uri(reference_predictions_uri)} have no rows")
    current_frame = sample_committed_output(manifest_uri, store, columns, drift.sample_rows, drift.seed)
    # Class labels are categories even when they are integers; regression predictions are numbers.
    labels = frozenset({PREDICTION}) if len(columns) > 1 else frozenset()
    snapshot, results = _run_evidently(config, reference_frame, current_frame, columns, labels)
    return _drift_result(config, "prediction_drift", "the predictions", snapshot, results, set(columns),
                         reference_frame, current_frame, store, report_path)


def _save_report(snapshot: Any, store: ArtifactStore, report_path: str) -> Any:
    with store.staging_file(report_path, suffix=".html") as temp:
        snapshot.save_html(temp)
        return store.write_file(report_path, temp, move=True)
