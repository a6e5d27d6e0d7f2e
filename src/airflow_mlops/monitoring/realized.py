"""Realized performance: labels joined to committed batch outputs by `data.ids`, out of core.

The join and every aggregate run in DuckDB over tables it keeps in a file-backed database in a
temporary folder, with a memory limit, so a join of tens of millions of predictions and labels spills
to disk instead of growing. Predictions and labels reach DuckDB as Arrow batches streamed from the
artifact store (so S3 reads keep the store's retries and version pinning; DuckDB's own S3 support
would download an extension at run time). Python only ever holds one batch or a grouped result:

- accuracy, balanced_accuracy, precision, recall, f1: the exact sklearn metrics of the
  (label, prediction) cells weighted by their counts;
- roc_auc, pr_auc: sklearn on (label, probability rounded to 1e-6) cells weighted by their counts;
- log_loss, brier and the regression metrics: exact sums in SQL.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import ConfigError, DataError
from airflow_mlops.monitoring.outputs import (
    PREDICTION,
    PROBABILITY_PREFIX,
    ScoredBatch,
    binary_classes,
    iter_output_batches,
    output_schema,
    probability_columns,
    recorded_classes,
    stored_probability_columns,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.storage import ArtifactStore

CONFUSION_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1")
RANKING_METRICS = ("roc_auc", "pr_auc")
PROBABILITY_DECIMALS = 6
NUMERIC_SLICE_VALUES = 20  # numeric slice columns with more distinct values are cut into quartiles
FLOAT_EPS = 2.220446049250313e-16  # numpy.finfo(float64).eps, sklearn's clip for log_loss and mape


@dataclass
class RealizedPerformance:
    version: int
    scoring_run_ids: list[str]
    rows: int
    labelled_rows: int
    coverage: float
    metrics: dict[str, float | None]
    slice_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels_fingerprint: str = ""
    period_start: datetime | None = None
    period_end: datetime | None = None
    notes: list[str] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        """Keyword arguments of `ModelRegistry.record_performance` (with kind='realized')."""
        return {
            "rows": self.rows, "labelled_rows": self.labelled_rows, "coverage": self.coverage,
            "metrics": self.metrics, "slice_metrics": self.slice_metrics,
            "labels_fingerprint": self.labels_fingerprint, "period_start": self.period_start,
            "period_end": self.period_end, "notes": self.notes,
        }


def realized_performance(
    config: PipelineConfig,
    batches: list[ScoredBatch],
    labels_uri: str,
    store: ArtifactStore,
    *,
    classes: list[Any] | None = None,
    memory_limit_mb: int = 512,
) -> list[RealizedPerformance]:
    """Join the labels at `labels_uri` to the committed outputs of `batches` by `data.ids`; one result per
    model version that made the predictions, with every monitored metric overall and per slice.

    Which prediction a label matches: without `monitoring.event_time`, the latest committed prediction of
    its id; with it, the latest prediction committed at or before the label's event time (a label older
    than every prediction of its id stays unmatched). When an id has several labels, the latest (by event
    time, else the last in file order) counts. Labels with a missing id or value, and labels of ids never
    scored, are left out and counted in `notes`.
    """
    import duckdb

    from airflow_mlops.training.threads import machine_threads

    monitoring = config.monitoring
    if monitoring is None:
        raise ConfigError(f"{config.pipeline}: the pipeline file has no monitoring: section")
    ids = list(config.data.ids)
    if not ids:
        raise ConfigError(f"{config.pipeline}: monitoring joins labels to predictions by data.ids, which is empty")
    if not batches:
        return []
    with tempfile.TemporaryDirectory(prefix="mlops-monitor-") as folder, \
            closing(duckdb.connect(f"{folder}/monitor.duckdb")) as db:
        db.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        db.execute(f"SET temp_directory = '{folder}/spill'")
        db.execute(f"SET threads = {machine_threads()}")
        db.execute("SET TimeZone = 'UTC'")
        join = _Join(db, config, ids, store)
        join.load_predictions(batches)
        join.load_labels(labels_uri)
        join.match()
        fingerprint = labels_fingerprint(labels_uri, store)
        return [join.performance(version, [b for b in batches if b.version == version], fingerprint, classes)
                for version in sorted({b.version for b in batches})]


def labels_fingerprint(uri: str, store: ArtifactStore) -> str:
    """The labels' identity: each file's URI and version (content changes change the version)."""
    from airflow_mlops.data.io import list_parts

    digest = hashlib.sha256()
    for part in list_parts(uri, store):
        digest.update(f"{store.uri(part)}|{store.version(part)}\n".encode())
    return digest.hexdigest()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Join:
    """The DuckDB tables of one monitor run: predictions, labels, and the matched pairs."""

    def __init__(self, db: Any, config: PipelineConfig, ids: list[str], store: ArtifactStore) -> None:
        self.db, self.config, self.ids, self.store = db, config, ids, store
        monitoring = config.monitoring
        assert monitoring is not None
        self.monitoring = monitoring
        self.label = monitoring.label or config.data.target
        self.event_time = monitoring.event_time
        self.slices = [s.column for s in monitoring.slices or []]
        self.classification = config.model.task != "regression"
        self.notes: list[str] = []
        self.probabilities: list[str] = []
        self.classes_by_version: dict[int, list[str]] = {}
        self.slices_in_predictions: list[str] = []

    # ------------------------------------------------------------------ loading

    def load_predictions(self, batches: list[ScoredBatch]) -> None:
        import pyarrow as pa

        schemas = [output_schema(b.manifest_uri, self.store) for b in batches]
        columns_by_batch = [list(schema.names) if schema is not None else [] for schema in schemas]
        for batch, schema in zip(batches, schemas, strict=True):
            if (recorded := recorded_classes(schema)) is not None:
                self.classes_by_version[batch.version] = recorded
        first = columns_by_batch[0]
        missing = [c for c in [*self.ids, PREDICTION] if c not in first]
        if missing:
            raise DataError(f"{batches[0].manifest_uri}: the batch output has no {', '.join(map(repr, missing))} "
                            "column; monitoring joins on data.ids")
        self.probabilities = list(dict.fromkeys(c for columns in columns_by_batch for c in probability_columns(columns)))
        self.slices_in_predictions = [c for c in self.slices if all(c in columns for columns in columns_by_batch)]
        wanted = [*self.ids, PREDICTION, *self.slices_in_predictions]

        def stream() -> Iterator[pa.RecordBatch]:
            for order, (batch, columns) in enumerate(zip(batches, columns_by_batch, strict=True)):
                present = [c for c in self.probabilities if c in columns]
                for record in iter_output_batches(batch.manifest_uri, self.store, wanted + present):
                    rows = record.num_rows
                    arrays = {name: record.column(name) for name in wanted}
                    for name in self.probabilities:  # a version with other classes leaves the others empty
                        arrays[name] = record.column(name).cast(pa.float64()) if name in present else pa.nulls(rows, pa.float64())
                    # constants without a Python object per row (lists cost ~40 ms a 65,536-row batch)
                    arrays["_version"] = pa.repeat(pa.scalar(batch.version, pa.int64()), rows)
                    arrays["_batch"] = pa.repeat(pa.scalar(order, pa.int32()), rows)
                    arrays["_committed"] = pa.repeat(pa.scalar(batch.committed_at, pa.timestamp("us", tz="UTC")), rows)
                    yield pa.RecordBatch.from_pydict(arrays)

        self._create_from_stream("predictions", stream())

    def load_labels(self, uri: str) -> None:
        import numpy as np
        import pyarrow as pa

        from airflow_mlops.data import iter_batches

        extra_slices = [c for c in self.slices if c not in self.slices_in_predictions]
        columns = list(dict.fromkeys([*self.ids, self.label, *([self.event_time] if self.event_time else []), *extra_slices]))

        def stream() -> Iterator[pa.RecordBatch]:
            seen = 0
            for record in iter_batches(uri, self.store, columns=columns):
                arrays = {name: record.column(name) for name in columns}
                arrays["_seq"] = pa.array(np.arange(seen, seen + record.num_rows, dtype=np.int64))
                seen += record.num_rows
                yield pa.RecordBatch.from_pydict(arrays)

        self._create_from_stream("labels_raw", stream())

    def _create_from_stream(self, table: str, batches: Iterator[pa.RecordBatch]) -> None:
        import pyarrow as pa

        first = next(batches, None)
        if first is None:
            raise DataError(f"monitoring: no rows to read for {table.removesuffix('_raw')}")

        def chained() -> Iterator[pa.RecordBatch]:
            yield first
            for record in batches:
                yield record.cast(first.schema) if record.schema != first.schema else record

        reader = pa.RecordBatchReader.from_batches(first.schema, chained())  # noqa: F841 - DuckDB reads it by name
        self.db.execute(f"CREATE TABLE {table} AS SELECT * FROM reader")

    # ----------------------------------------------------------------- matching

    def _count(self, sql: str) -> int:
        return int(self.db.execute(sql).fetchone()[0])

    def match(self) -> None:
        keys = ", ".join(map(_quoted, self.ids))
        label, event = _quoted(self.label), _quoted(self.event_time) if self.event_time else None
        present = " AND ".join([*(f"{_quoted(c)} IS NOT NULL" for c in self.ids), f"{label} IS NOT NULL"])
        self._align_key_types()
        total = self._count("SELECT count(*) FROM labels_raw")
        usable = self._count(f"SELECT count(*) FROM labels_raw WHERE {present}")
        if usable < total:
            self.notes.append(f"{total - usable} labels have a missing id or value and are left out")
        duplicated = self._count(f"SELECT count(*) FROM (SELECT 1 FROM labels_raw WHERE {present} "
                                 f"GROUP BY {keys} HAVING count(*) > 1)")
        order = f"{event} DESC NULLS LAST, _seq DESC" if event else "_seq DESC"
        if duplicated:
            which = "latest event time" if event else "last in file order"
            self.notes.append(f"{duplicated} ids have more than one label; the {which} counts")
            source = (f"SELECT * EXCLUDE (_rank) FROM (SELECT *, row_number() OVER (PARTITION BY {keys} "
                      f"ORDER BY {order}) AS _rank FROM labels_raw WHERE {present}) WHERE _rank = 1")
            self.db.execute(f"CREATE TABLE labels AS {source}")
        else:  # one label per id: no copy of the labels is needed
            self.db.execute(f"CREATE VIEW labels AS SELECT * FROM labels_raw WHERE {present}")

        prediction_keys = " AND ".join(f"p.{_quoted(c)} = l.{_quoted(c)}" for c in self.ids)
        slice_columns = "".join(f", l.{_quoted(c)}" for c in self.slices if c not in self.slices_in_predictions)
        label_columns = f"l.{label} AS _label" + (f", CAST(l.{event} AS TIMESTAMPTZ) AS _event" if event else "")
        if event:
            # The latest prediction committed at or before each label's event time.
            self.db.execute(f"CREATE TABLE matched AS SELECT p.*, {label_columns}{slice_columns} FROM labels l "
                            f"ASOF JOIN predictions p ON {prediction_keys} AND CAST(l.{event} AS TIMESTAMPTZ) >= p._committed")
            self.db.execute("CREATE VIEW scored AS SELECT * FROM predictions")
        else:
            repeated = self._count(f"SELECT count(*) FROM (SELECT 1 FROM predictions GROUP BY {keys} HAVING count(*) > 1)")
            if repeated:
                self.notes.append(f"{repeated} ids were scored more than once; a label matches the latest prediction")
                self.db.execute(f"CREATE TABLE scored AS SELECT * EXCLUDE (_rank) FROM (SELECT *, row_number() OVER "
                                f"(PARTITION BY {keys} ORDER BY _committed DESC, _batch DESC) AS _rank FROM predictions) "
                                "WHERE _rank = 1")
            else:
                self.db.execute("CREATE VIEW scored AS SELECT * FROM predictions")
            self.db.execute(f"CREATE TABLE matched AS SELECT p.*, {label_columns}{slice_columns} "
                            f"FROM scored p JOIN labels l ON {prediction_keys}")
        labelled, matched = self._count("SELECT count(*) FROM labels"), self._count("SELECT count(*) FROM matched")
        if event and labelled > matched:
            never = self._count(f"SELECT count(*) FROM labels l WHERE NOT EXISTS "
                                f"(SELECT 1 FROM predictions p WHERE {prediction_keys})")
        else:
            # One label per id and one prediction per id: every label of a scored id is matched, so the rest
            # were never scored (and a second join of all labels with all predictions is not needed).
            never = labelled - matched
        if never:
            self.notes.append(f"{never} labels name ids that were never scored in the window and are left out")
        if event:
            early = labelled - never - matched
            if early:
                self.notes.append(f"{early} labels are older than every prediction of their id and are left out")

    def _align_key_types(self) -> None:
        """Ids read as integers on one side and text on the other (csv vs parquet) still join, as text."""
        def types(table: str) -> dict[str, str]:
            return {row[0]: row[1] for row in self.db.execute(f"DESCRIBE {table}").fetchall()}

        predicted, labelled = types("predictions"), types("labels_raw")
        for column in self.ids:
            if predicted[column] == labelled[column]:
                continue
            # 7 on one side and 7.0 on the other (a file with gaps reads integers as floats) are one id.
            common = "DOUBLE" if _numeric(predicted[column]) and _numeric(labelled[column]) else "VARCHAR"
            for table, kind in (("predictions", predicted[column]), ("labels_raw", labelled[column])):
                name = _quoted(column)
                if common == "VARCHAR" and kind in ("DOUBLE", "FLOAT"):
                    # as text, an integral 7.0 must read '7' to meet the other side's '7'
                    self.db.execute(f"ALTER TABLE {table} ALTER {name} TYPE VARCHAR USING CASE WHEN {name} = "
                                    f"trunc({name}) THEN CAST(CAST({name} AS BIGINT) AS VARCHAR) ELSE CAST({name} AS VARCHAR) END")
                else:
                    self.db.execute(f"ALTER TABLE {table} ALTER {name} TYPE {common}")

    # ------------------------------------------------------------------ metrics

    def performance(self, version: int, batches: list[ScoredBatch], fingerprint: str,
                    classes: list[Any] | None) -> RealizedPerformance:
        where = f"_version = {int(version)}"
        if classes is None:
            classes = self.classes_by_version.get(version)
        rows = self._count(f"SELECT count(*) FROM scored WHERE {where}")
        labelled = self._count(f"SELECT count(*) FROM matched WHERE {where}")
        if self.event_time:
            start, end = self.db.execute(f"SELECT min(_event), max(_event) FROM matched WHERE {where}").fetchone()
        else:
            start, end = min(b.committed_at for b in batches), max(b.committed_at for b in batches)
        names = list(self.monitoring.metrics or [])
        metrics = self.metrics(where, names, classes) if labelled else dict.fromkeys(names)
        slice_metrics = {key: {"rows": count, **self.metrics(f"{where} AND {condition}", names, classes)}
                         for key, condition, count in self._slice_conditions(where)}
        notes = list(self.notes)
        if not labelled:
            notes.append(f"no label matches a prediction of v{version}")
        return RealizedPerformance(
            version=version, scoring_run_ids=[b.run_id for b in batches], rows=rows, labelled_rows=labelled,
            coverage=labelled / rows if rows else 0.0, metrics=metrics, slice_metrics=slice_metrics,
            labels_fingerprint=fingerprint, period_start=start, period_end=end, notes=notes,
        )

    def _slice_conditions(self, where: str) -> list[tuple[str, str, int]]:
        """(key 'column=value', SQL condition, labelled rows) for each slice value; numeric columns with many
        values are cut at their quartiles (key 'column in [a, b)')."""
        found: list[tuple[str, str, int]] = []
        for column in self.slices:
            name = _quoted(column)
            kind = dict((r[0], r[1]) for r in self.db.execute("DESCRIBE matched").fetchall())[column]
            numeric = _numeric(kind)
            distinct = self._count(f"SELECT count(DISTINCT {name}) FROM matched WHERE {where}")
            if numeric and distinct > NUMERIC_SLICE_VALUES:
                edges = self.db.execute(f"SELECT quantile_cont({name}, [0.25, 0.5, 0.75]) FROM matched "
                                        f"WHERE {where}").fetchone()[0]
                bounds = [-math.inf, *sorted(set(edges)), math.inf]
                for low, high in zip(bounds, bounds[1:], strict=False):
                    condition = " AND ".join([*([f"{name} >= {low!r}"] if math.isfinite(low) else []),
                                              *([f"{name} < {high!r}"] if math.isfinite(high) else [])])
                    count = self._count(f"SELECT count(*) FROM matched WHERE {where} AND {condition}")
                    if count:
                        found.append((f"{column} in [{low:.4g}, {high:.4g})", condition, count))
                continue
            for value, count in self.db.execute(f"SELECT {name}, count(*) FROM matched WHERE {where} "
                                                f"GROUP BY ALL ORDER BY 2 DESC").fetchall():
                condition = f"{name} IS NULL" if value is None else f"{name} = {_literal(value)}"
                found.append((f"{column}={value}", condition, int(count)))
        return found

    def metrics(self, where: str, names: list[str], classes: list[Any] | None) -> dict[str, float | None]:
        if not self.classification:
            return self._regression(where, names)
        return self._classification(where, names, classes)

    def _class_text(self, column: str) -> str:
        """A label or prediction as the text after `proba_` in the probability columns (Python's str())."""
        kind = dict((r[0], r[1]) for r in self.db.execute("DESCRIBE matched").fetchall())[column]
        name = _quoted(column)
        if kind == "BOOLEAN":
            return f"CASE WHEN {name} THEN 'True' ELSE 'False' END"
        if kind in ("DOUBLE", "FLOAT", "REAL"):
            # 1.0 read from a file with gaps names the class 1
            return f"CASE WHEN {name} = trunc({name}) THEN CAST(CAST({name} AS BIGINT) AS VARCHAR) ELSE CAST({name} AS VARCHAR) END"
        return f"CAST({name} AS VARCHAR)"

    def _classification(self, where: str, names: list[str], classes: list[Any] | None) -> dict[str, float | None]:
        import numpy as np

        from airflow_mlops.evaluation.metrics import compute_metrics

        task = self.config.model.task
        y, p = self._class_text("_label"), self._class_text(PREDICTION)
        known = [c.removeprefix(PROBABILITY_PREFIX) for c in self.probabilities]
        if classes is not None:
            known = [str(c) for c in classes]
        elif len(known) <= 1:
            seen = [row[0] for row in self.db.execute(
                f"SELECT DISTINCT y FROM (SELECT {y} AS y FROM matched WHERE {where} UNION "
                f"SELECT {p} FROM matched WHERE {where}) WHERE y IS NOT NULL ORDER BY 1").fetchall()]
            if known and task == "binary_classification":
                # Two classes store only the positive class's probability: the other class is the other value.
                known = binary_classes(known[0], seen)
            else:
                known = seen
        results: dict[str, float | None] = dict.fromkeys(names)
        confusion = [m for m in names if m in CONFUSION_METRICS]
        if confusion:
            cells = self.db.execute(f"SELECT {y}, {p}, count(*) FROM matched WHERE {where} GROUP BY ALL").fetchall()
            y_true = np.array([c[0] for c in cells], dtype=object)
            y_pred = np.array([c[1] for c in cells], dtype=object)
            weight = np.array([c[2] for c in cells], dtype=float)
            results.update(compute_metrics(task, confusion, y_true, y_pred, classes=known, sample_weight=weight))
        wanted = [m for m in names if m not in CONFUSION_METRICS]
        if not wanted:
            return results
        if not all(c in self.probabilities for c in stored_probability_columns(known)):
            self.notes.append(f"{', '.join(wanted)}: the batch output has no probabilities of every class")
            return results
        binary = task == "binary_classification" and len(known) == 2
        # For two classes only the positive class's probability is stored: the other is one minus it.
        raw = ({known[0]: f"(1 - {_quoted(PROBABILITY_PREFIX + known[1])})",
                known[1]: _quoted(PROBABILITY_PREFIX + known[1])} if binary
               else {c: _quoted(PROBABILITY_PREFIX + c) for c in known})
        probability = {c: f"greatest(least({raw[c]}, {1 - FLOAT_EPS!r}), {FLOAT_EPS!r})" for c in known}
        true_probability = "CASE " + " ".join(f"WHEN y = {_literal(c)} THEN {probability[c]}" for c in known) + " END"
        source = f"(SELECT {y} AS y, * FROM matched WHERE {where})"
        if "log_loss" in wanted:
            results["log_loss"] = _finite(self.db.execute(f"SELECT avg(-ln({true_probability})) FROM {source}").fetchone()[0])
        if binary and "brier" in wanted:
            positive = raw[known[1]]
            results["brier"] = _finite(self.db.execute(
                f"SELECT avg(power(CASE WHEN y = {_literal(known[1])} THEN 1.0 ELSE 0.0 END - {positive}, 2)) "
                f"FROM {source}").fetchone()[0])
        ranked = [m for m in wanted if m in RANKING_METRICS]
        if ranked:
            targets = [known[1]] if binary else known
            scores: dict[str, list[float]] = {m: [] for m in ranked}
            # The label's own values (a few) are named as classes here, so the query compares raw values
            # instead of casting every row to text; the cells come back as arrays, not a tuple per cell.
            values = [row[0] for row in self.db.execute(f"SELECT DISTINCT _label FROM matched WHERE {where}").fetchall()]
            for target in targets:
                column = _quoted(f"{PROBABILITY_PREFIX}{target}")
                hits = [_literal(v) for v in values if v is not None and _text(v) == target]
                is_target = f"_label IN ({', '.join(hits)})" if hits else "FALSE"
                cells = self.db.execute(f"SELECT {is_target} AS y, round({column}, {PROBABILITY_DECIMALS}) AS s, "
                                        f"count(*) AS n FROM matched WHERE {where} GROUP BY ALL").fetchnumpy()
                positive = np.ma.filled(np.ma.asarray(cells["y"], dtype=bool), False)
                score = np.ma.filled(np.ma.asarray(cells["s"], dtype=float), np.nan)
                weight = np.ma.filled(np.ma.asarray(cells["n"], dtype=float), 0.0)
                outcome = compute_metrics("binary_classification", ranked, np.where(positive, "1", "0"), positive,
                                          np.column_stack([1 - score, score]), classes=["0", "1"], sample_weight=weight)
                for metric in ranked:
                    scores[metric].append(outcome[metric])
            for metric in ranked:
                values = scores[metric]
                if binary or metric == "roc_auc":  # macro one-vs-rest, as sklearn's roc_auc_score(multi_class='ovr')
                    results[metric] = None if any(v is None for v in values) else float(np.mean(values))
        return results

    def _regression(self, where: str, names: list[str]) -> dict[str, float | None]:
        y, p = "CAST(_label AS DOUBLE)", f"CAST({_quoted(PREDICTION)} AS DOUBLE)"
        n, sse, sae, variance, ape = self.db.execute(
            f"SELECT count(*), sum(power({y} - {p}, 2)), sum(abs({y} - {p})), var_pop({y}), "
            f"avg(abs({y} - {p}) / greatest(abs({y}), {FLOAT_EPS!r})) FROM matched WHERE {where}").fetchone()
        if not n:
            return dict.fromkeys(names)
        values = {
            "rmse": math.sqrt(sse / n),
            "mae": sae / n,
            "r2": 1.0 - sse / (n * variance) if variance else None,
            "mape": ape,
        }
        return {name: _finite(values.get(name)) for name in names}


def _numeric(kind: str) -> bool:
    return any(name in kind for name in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL"))


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _text(value: Any) -> str:
    """A value as the text after `proba_` in the probability columns, as `_class_text` casts it in SQL."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"
