"""Scoring one chunk and committing a run: deterministic keys, manifest last, bounded memory."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_mlops.cost import Cost, cpu_seconds_per_million_rows, measure_cost
from airflow_mlops.errors import DataError
from airflow_mlops.inference.plan import BatchPlan, check_output_prefix
from airflow_mlops.refs import ArtifactRef, Record

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from airflow_mlops.refs import GateResult
    from airflow_mlops.storage import ArtifactStore
    from airflow_mlops.training import LoadedModel, PendingPrediction

log = logging.getLogger(__name__)
DEFAULT_BATCH_ROWS = 524_288
PROBABILITY_SUM_TOLERANCE = 1e-6  # relative to the expected sum of 1; float32 softmax rounding stays far below
PROGRESS_SECONDS = 10.0
CLASSES_METADATA_KEY = b"airflow_mlops.classes"
_MODELS: dict[str, LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


class ChunkResult(Record):
    index: int
    uri: str
    rows: int
    sha256: str
    size: int
    seconds: float
    worker: str
    cost: Cost | None = None  # the whole task's: loading the model, reading, validating, scoring, writing


def _model(plan: BatchPlan, store: ArtifactStore) -> LoadedModel:
    """Each process loads (and verifies) the pinned model once."""
    from airflow_mlops.training import load_model

    with _MODELS_LOCK:
        if plan.artifact_sha256 not in _MODELS:
            _MODELS[plan.artifact_sha256] = load_model(plan.artifact_uri, store, expected_sha256=plan.artifact_sha256)
        return _MODELS[plan.artifact_sha256]


def _numpy_dtype(arrow_type: pa.DataType) -> str:
    import numpy as np

    try:
        return str(np.dtype(arrow_type.to_pandas_dtype()))
    except (NotImplementedError, TypeError):
        return "object"


def _check_schema(schema: pa.Schema, model: LoadedModel, plan: BatchPlan, uri: str, index: int) -> None:
    columns = {field.name: _numpy_dtype(field.type) for field in schema}
    for kind, wanted in (("id", plan.id_columns), ("slice", plan.slice_columns)):
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise DataError(f"chunk {index} ({uri}): missing {kind} column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    try:
        model.check_features(columns)
    except DataError as exc:
        raise DataError(f"chunk {index} ({uri}): {exc}") from None


def _start_prediction(model: LoadedModel, batch: pa.RecordBatch) -> PendingPrediction:
    """(predictions, probabilities or None), started. All-numeric features go to the model as columns,
    predicted on the flavor's threads where it has them; a frame is predicted here."""
    from airflow_mlops.training import PendingPrediction

    spec = model.spec
    if not spec.categorical:
        return model.start_columns([batch.column(c).to_numpy(zero_copy_only=False) for c in spec.features])
    frame = batch.to_pandas()
    if model.task == "regression":
        return PendingPrediction.done((model.predict(frame), None))
    proba = model.predict_proba(frame)
    return PendingPrediction.done((model.labels.decode(proba.argmax(axis=1)), proba))


def proba_column(label: Any) -> str:
    """The output column holding the probability of class `label` (batch outputs and stored test predictions)."""
    return f"proba_{label}"


def with_classes(table: pa.Table, classes: list[Any] | None) -> pa.Table:
    """`table` with the model's classes in its schema metadata (under CLASSES_METADATA_KEY): a binary output
    stores one probability column, so readers learn the other class from here rather than guess it."""
    if not classes:
        return table
    return table.replace_schema_metadata({**(table.schema.metadata or {}),
                                         CLASSES_METADATA_KEY: json.dumps([str(c) for c in classes]).encode()})


def probability_outputs(classes: list[Any] | None, proba: np.ndarray) -> dict[str, Any]:
    """The probability columns a classifier writes: one per class, except for two classes, where only the
    positive (second) class's is written, since the other is one minus it (batch outputs and stored test
    predictions alike)."""
    import pyarrow as pa

    labels = list(classes or [])
    if len(labels) == 2:
        return {proba_column(labels[1]): pa.array(proba[:, 1])}
    return {proba_column(label): pa.array(proba[:, position]) for position, label in enumerate(labels)}


def _first_row(bad: np.ndarray) -> int:
    import numpy as np

    return int(np.flatnonzero(bad if bad.ndim == 1 else bad.any(axis=1))[0])


def require_sane_outputs(predictions: np.ndarray, proba: np.ndarray | None, *, index: int, first_row: int) -> None:
    """Raise DataError when the model's output cannot be written: NaN or infinite predictions, probabilities
    NaN, infinite or outside [0, 1], or rows of probabilities that do not sum to 1. For two classes only the
    positive class's probability is written (the other is one minus it), so only that column is checked.

    `first_row` is the position of this batch's first row in the chunk, so messages name rows of the chunk.
    A few reductions clear a sane batch; the counts and positions are computed only for a bad one.
    """
    import numpy as np

    def fail(count: int, what: str, bad: np.ndarray) -> NoReturn:
        raise DataError(f"chunk {index}: {count} {what} (first at row {first_row + _first_row(bad)}); "
                        "the model's output is not usable, so nothing of this chunk is written")

    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing or inf - inf sum is expected, not news
        # A finite sum (one pass, no temporary array) clears the usual batch; NaN or overflow falls through to the count.
        if predictions.dtype.kind == "f" and not np.isfinite(predictions.sum()):
            bad = ~np.isfinite(predictions)
            if bad.any():
                fail(int(bad.sum()), "predictions are NaN or infinite", bad)
        if proba is None or proba.size == 0:
            return
        binary = proba.shape[1] == 2
        if binary:
            proba = proba[:, 1]
        if not (proba.min() >= 0.0 and proba.max() <= 1.0):  # NaN fails both comparisons
            bad = ~np.isfinite(proba)
            if bad.any():
                fail(int(bad.sum()), "probabilities are NaN or infinite", bad)
            bad = (proba < 0.0) | (proba > 1.0)
            fail(int(bad.sum()), "probabilities outside [0, 1]", bad)
        if binary:
            return
        error = proba.sum(axis=1, dtype=np.float64)
        error -= 1.0
        np.abs(error, out=error)
        if error.max() > PROBABILITY_SUM_TOLERANCE:
            bad = error > PROBABILITY_SUM_TOLERANCE
            fail(int(bad.sum()), f"rows of probabilities do not sum to 1 (tolerance {PROBABILITY_SUM_TOLERANCE:g})", bad)


class _Constants:
    """The columns whose every row is the same (model, version, run, source file), built once per batch size
    and shared by the batches of a chunk, which are nearly all of one size: Arrow arrays are immutable."""

    def __init__(self, plan: BatchPlan) -> None:
        self._plan = plan
        self._key: tuple[int, str] | None = None
        self._columns: dict[str, Any] = {}

    def columns(self, rows: int, source_file: str) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa

        if self._key != (rows, source_file):
            plan = self._plan
            same = pa.array(np.zeros(rows, dtype="int32"))  # one-entry dictionaries: no per-row strings
            self._columns = {
                "model_name": pa.DictionaryArray.from_arrays(same, pa.array([plan.model_name])),
                "model_version": pa.array(np.full(rows, plan.model_version, dtype="int64")),
                "run_id": pa.DictionaryArray.from_arrays(same, pa.array([plan.run_id])),
            }
            if plan.row_numbers:
                self._columns["source_file"] = pa.DictionaryArray.from_arrays(same, pa.array([source_file]))
            self._key = (rows, source_file)
        return self._columns


def _output_table(batch: pa.RecordBatch, plan: BatchPlan, model: LoadedModel, predictions: np.ndarray,
                  proba: np.ndarray | None, source: tuple[str, int], constants: _Constants) -> pa.Table:
    """The output rows of one input batch; `source`: the batch's file and the row number of its first row."""
    import numpy as np
    import pyarrow as pa

    # Ids to join labels on, slice columns to group realized performance by: as the input has them.
    passed = [*plan.id_columns, *plan.slice_columns]
    own: dict[str, Any] = {"prediction": pa.array(predictions)}
    if proba is not None:
        own.update(probability_outputs(model.classes, proba))
    rows = batch.num_rows
    source_file, first_row = source
    own.update(constants.columns(rows, source_file))
    if plan.row_numbers:
        own["source_row"] = pa.array(np.arange(first_row, first_row + rows, dtype="int64"))
    # The columns written here are never null (require_sane_outputs): declared so, parquet stores no
    # definition levels for them, which writing and every later read would otherwise pay per row.
    schema = pa.schema([*(batch.schema.field(c) for c in passed),
                        *(pa.field(name, array.type, nullable=False) for name, array in own.items())])
    table = pa.Table.from_arrays([*(batch.column(c) for c in passed), *own.values()], schema=schema)
    return with_classes(table, model.classes)


def _column_encodings(schema: pa.Schema, id_columns: list[str]) -> dict[str, Any]:
    """How the writer encodes each output column (ParquetWriter's keyword arguments).

    Constants (the model, the run, the source file) are one-entry dictionaries, written as they are.
    Integer outputs (class labels, the model version, row numbers) are delta-encoded: as small as a
    dictionary for a few distinct values, without hashing every row. Text labels keep a dictionary.
    Min/max statistics only where a reader filters (joining labels by id); probabilities are random
    to a compressor, so they are stored as they are.
    """
    import pyarrow as pa

    dictionary, delta = [], []
    for field in schema:
        if pa.types.is_dictionary(field.type):
            dictionary.append(field.name)
        elif field.name in {"prediction", "model_version", "source_row"} and pa.types.is_integer(field.type):
            delta.append(field.name)
        elif field.name == "prediction" and (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            dictionary.append(field.name)
    return {
        "use_dictionary": dictionary or False,
        "column_encoding": dict.fromkeys(delta, "DELTA_BINARY_PACKED") or None,
        "write_statistics": [c for c in id_columns if c in schema.names] or False,
        "compression": {f.name: "none" if f.name.startswith("proba_") else "snappy" for f in schema},
    }


def _read_chunk(chunk: Any, store: ArtifactStore, model: LoadedModel, plan: BatchPlan, columns: list[str],
                batch_rows: int, index: int, put: Callable[[Any], None]) -> None:
    from airflow_mlops.data import iter_row_group_batches

    for part in chunk.parts:
        def check(schema: pa.Schema, uri: str = part.uri) -> None:
            _check_schema(schema, model, plan, uri, index)

        # One open per part: the schema is checked against the model before any batch is read.
        row = part.first_row
        for batch in iter_row_group_batches(part.uri, store, part.row_groups, columns=columns, batch_rows=batch_rows,
                                            version=part.version, on_schema=check):
            put(((part.uri, row), batch))
            row += batch.num_rows


_DONE = object()


class _Pipe:
    """Runs a producer in a thread; iterating yields what it puts, and re-raises its error."""

    def __init__(self, produce: Callable[[Callable[[Any], None]], None], depth: int = 2) -> None:
        import queue

        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        import queue

        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _run(self, produce: Callable[[Callable[[Any], None]], None]) -> None:
        try:
            produce(self._put)
            self._put(_DONE)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the consumer
            with contextlib.suppress(_Stopped):
                self._put(exc)

    def __iter__(self) -> Any:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)


class _Stopped(Exception):
    pass


class _Writer:
    """Writes output tables on its own thread."""

    def __init__(self, path: str, id_columns: list[str]) -> None:
        import queue

        self._path = path
        self._id_columns = id_columns
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import pyarrow.parquet as pq

        writer = None
        try:
            while (table := self._queue.get()) is not _DONE:
                if writer is None:
                    writer = pq.ParquetWriter(self._path, table.schema, **_column_encodings(table.schema, self._id_columns))
                writer.write_table(table)
        except BaseException as exc:  # re-raised by close()
            self._error = exc
            while self._queue.get() is not _DONE:
                pass
        finally:
            if writer is not None:
                writer.close()

    def put(self, table: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def close(self) -> None:
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join(timeout=30)


def score_chunk(
    plan: BatchPlan | dict[str, Any],
    index: int,
    store: ArtifactStore,
    *,
    validate: Callable[[pd.DataFrame], GateResult] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    worker: str | None = None,
) -> ChunkResult:
    """Score chunk `index` into `<output_prefix>/part-<index>.parquet` (overwritten on retry).

    `worker` names the host in the manifest (default: this machine's hostname); the pid is added.
    The result's `cost` is the chunk's wall time, CPU-seconds and peak memory (see `airflow_mlops.cost`);
    a retried chunk reports its own try's, which replaces the earlier one in the manifest.
    """
    with measure_cost() as meter:
        result = _score_chunk(plan, index, store, validate=validate, batch_rows=batch_rows, worker=worker)
    return result.model_copy(update={"cost": meter.cost})


def _score_chunk(
    plan: BatchPlan | dict[str, Any], index: int, store: ArtifactStore, *,
    validate: Callable[[pd.DataFrame], GateResult] | None, batch_rows: int, worker: str | None,
) -> ChunkResult:
    plan = plan if isinstance(plan, BatchPlan) else BatchPlan.from_dict(plan)
    if not 0 <= index < len(plan.chunks):
        raise DataError(f"chunk {index} is not in the plan ({len(plan.chunks)} chunks)")
    check_output_prefix(plan, store)
    chunk = plan.chunks[index]
    model = _model(plan, store)
    columns = list(dict.fromkeys([*model.feature_names, *plan.id_columns, *plan.slice_columns]))
    started = time.monotonic()
    last_report = started
    rows = 0
    part = plan.part_uri(index)
    # This chunk's task is the part's only writer, so whatever an earlier, killed try left is stale.
    with store.staging_file(part, suffix=".parquet", stale_after=0) as temp:
        # Reading and writing run beside the prediction (pyarrow and xgboost release the GIL);
        # the queues hold two batches each, so memory stays bounded by the batch size.
        reader = _Pipe(lambda put: _read_chunk(chunk, store, model, plan, columns, batch_rows, index, put))
        writer = _Writer(temp, plan.id_columns)
        # Two batches predict at once: the next batch's pieces queue behind this one's, so no core idles
        # while the last piece of a batch finishes or its output is built; output order is read order.
        in_flight: deque[tuple[tuple[str, int], pa.RecordBatch, PendingPrediction]] = deque()
        constants = _Constants(plan)

        def write_oldest() -> None:
            nonlocal rows, last_report
            source, batch, pending = in_flight.popleft()
            predictions, proba = pending.result()
            require_sane_outputs(predictions, proba, index=index, first_row=rows)
            writer.put(_output_table(batch, plan, model, predictions, proba, source, constants))
            rows += batch.num_rows
            now = time.monotonic()
            if now - last_report >= PROGRESS_SECONDS:
                log.info("chunk %d: %d / %d rows (%.0f rows/s)", index, rows, chunk.rows, rows / (now - started))
                last_report = now

        try:
            for source, batch in reader:
                if validate is not None:
                    gate = validate(batch.to_pandas())
                    if not gate.passed:
                        raise DataError(f"chunk {index} ({source[0]}) failed validation: " + "; ".join(gate.failures))
                in_flight.append((source, batch, _start_prediction(model, batch)))
                if len(in_flight) > 1:
                    write_oldest()
            while in_flight:
                write_oldest()
            writer.close()
            if rows == 0:
                raise DataError(f"chunk {index}: no rows were read")
            if rows != chunk.rows:
                raise DataError(f"chunk {index}: read {rows} rows but the plan has {chunk.rows}; the input changed since planning")
            ref = store.write_file(part, temp, move=True)
        finally:
            for _, _, pending in in_flight:  # after an error: nobody waits for these
                pending.cancel()
            reader.stop()
            writer.abort()
    seconds = time.monotonic() - started
    log.info("chunk %d: %d rows in %.1f s (%.0f rows/s)", index, rows, seconds, rows / max(seconds, 1e-9))
    return ChunkResult(
        index=index, uri=ref.uri, rows=rows, sha256=ref.sha256, size=ref.size, seconds=round(seconds, 3),
        worker=f"{worker or socket.gethostname()}:{os.getpid()}",
    )


def commit_batch(plan: BatchPlan | dict[str, Any], results: list[ChunkResult | dict[str, Any]], store: ArtifactStore) -> ArtifactRef:
    """Check every planned chunk, delete stale parts, then write the manifest (last)."""
    from airflow_mlops.storage import ensure_within

    plan = plan if isinstance(plan, BatchPlan) else BatchPlan.from_dict(plan)
    check_output_prefix(plan, store)
    by_index: dict[int, ChunkResult] = {}
    for result in results:
        result = result if isinstance(result, ChunkResult) else ChunkResult.model_validate(
            {k: v for k, v in result.items() if k in ChunkResult.model_fields}
        )
        by_index[result.index] = result
    problems = []
    for chunk in plan.chunks:
        result = by_index.get(chunk.index)
        if result is None:
            problems.append(f"chunk {chunk.index} has no result")
        elif result.rows != chunk.rows:
            problems.append(f"chunk {chunk.index} has {result.rows} rows, planned {chunk.rows}")
        elif result.uri != plan.part_uri(chunk.index) or not store.exists(result.uri):
            problems.append(f"chunk {chunk.index}: part {result.uri} is missing")
        elif store.sha256(result.uri) != result.sha256:
            problems.append(f"chunk {chunk.index}: part {result.uri} changed after it was written")
    if problems:
        raise DataError("not committing the batch output: " + "; ".join(problems))
    expected = {plan.part_uri(c.index) for c in plan.chunks}
    # Only parts of an earlier attempt with another plan and the old manifest, directly in the run's
    # folder: a file the commit cannot prove is its own (a user's note, a sub-folder) stays.
    stale = [u for u in store.list(plan.output_prefix) if u not in expected and plan.own_output_name(u)]
    for uri in stale:
        ensure_within(plan.output_prefix, uri, "delete")
    for uri in stale:
        store.delete(uri)  # each target's containment in the run's folder was proved just above
    # Every chunk has finished, so any temporary left in the run's folder is a killed write's.
    stale += store.remove_stale_temporaries(plan.output_prefix)
    ordered = [by_index[c.index] for c in plan.chunks]
    manifest = {
        "format": 1,
        "pipeline": plan.pipeline,
        "model": {"name": plan.model_name, "version": plan.model_version, "artifact_sha256": plan.artifact_sha256},
        "run_id": plan.run_id,
        "input": {"uri": plan.input_uri, "fingerprint": plan.input_fingerprint,
                  "files": [{"uri": uri, "version": version}
                            for uri, version in dict.fromkeys((p.uri, p.version) for c in plan.chunks for p in c.parts)]},
        "total_rows": sum(r.rows for r in ordered),
        "parts": [{"uri": r.uri, "rows": r.rows, "sha256": r.sha256, "size": r.size, "seconds": r.seconds,
                   "worker": r.worker, "cost": r.cost.to_dict() if r.cost else None} for r in ordered],
        "timing": {"chunk_seconds": round(sum(r.seconds for r in ordered), 3), "planned_at": plan.planned_at,
                   "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "cost": batch_cost(ordered),
        "removed_stale": stale,
    }
    return store.write_json(plan.manifest_uri, manifest)


def batch_cost(results: list[ChunkResult]) -> dict[str, Any]:
    """The batch's cost from its chunks': summed wall and CPU-seconds, CPU-seconds per million rows, the
    largest peak memory. Unknown (None) when a chunk's result carries no cost (scored before costs were kept)."""
    rows = sum(r.rows for r in results)
    costs = [r.cost for r in results]
    if not costs or any(c is None for c in costs):
        return {"rows": rows, "wall_seconds": None, "cpu_seconds": None, "cpu_seconds_per_million_rows": None,
                "peak_memory_bytes": None, "peak_memory_scope": None}
    cpu = round(sum(c.cpu_seconds for c in costs), 3)
    peaks = [c.peak_memory_bytes for c in costs if c.peak_memory_bytes is not None]
    return {
        "rows": rows,
        "wall_seconds": round(sum(c.wall_seconds for c in costs), 3),
        "cpu_seconds": cpu,
        "cpu_seconds_per_million_rows": cpu_seconds_per_million_rows(cpu, rows),
        "peak_memory_bytes": max(peaks) if peaks else None,
        "peak_memory_scope": "process" if any(c.peak_memory_scope == "process" for c in costs) else "task",
    }


def read_output(prefix: str, store: ArtifactStore) -> pd.DataFrame:
    """A committed output: only the parts its manifest lists, each verified; no manifest, no output."""
    import pandas as pd

    from airflow_mlops.data import read_table

    manifest_uri = f"{prefix.rstrip('/')}/_manifest.json"
    if not store.exists(manifest_uri):
        raise DataError(f"{store.uri(prefix)} has no _manifest.json: the batch output was never committed")
    manifest = store.read_json(manifest_uri)
    frames = []
    for part in manifest["parts"]:
        data = store.read_bytes(part["uri"], expected_sha256=part["sha256"])
        del data  # verified; read_table streams the same file
        frames.append(read_table(part["uri"], store))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

