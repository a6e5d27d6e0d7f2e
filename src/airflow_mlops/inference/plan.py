"""Batch-inference plans: the pinned model version and the input cut into chunks."""

from __future__ import annotations

import math
import posixpath
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import Field

from airflow_mlops.errors import ConfigError, DataError, UnsafePathError
from airflow_mlops.refs import Record

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.storage import ArtifactStore

MAX_CHUNKS = 1024  # Airflow's [core] max_map_length
PLAN_THREADS = 8  # footer reads at once; below botocore's default pool of 10 connections
MANIFEST_NAME = "_manifest.json"
OUTPUT_COLUMNS = ("prediction", "model_name", "model_version", "run_id")  # besides proba_<class>
ROW_NUMBER_COLUMNS = ("source_file", "source_row")  # with inference.row_numbers
PART_NAME = re.compile(r"part-\d{5,}\.parquet")  # what `BatchPlan.part_uri` names


class ChunkPart(Record):
    uri: str
    version: str | None = Field(None, description="the file's version at planning; scoring refuses any other")
    row_groups: list[int] | None = Field(None, description="parquet row groups; None = the whole file (csv)")
    rows: int
    first_row: int = Field(0, description="the 0-based row number, in its file, of the part's first row")


class Chunk(Record):
    index: int
    rows: int
    parts: list[ChunkPart]


class BatchPlan(Record):
    """Everything a worker needs to score one chunk, decided once per run."""

    pipeline: str
    model_name: str
    model_version: int
    artifact_uri: str
    artifact_sha256: str
    run_id: str
    input_uri: str
    output_prefix: str
    id_columns: list[str]
    slice_columns: list[str] = Field(
        default_factory=list, description="input columns carried into the output beside the ids (monitoring.slices)"
    )
    chunk_rows: int
    total_rows: int
    chunks: list[Chunk]
    row_numbers: bool = Field(False, description="the output carries source_file and source_row")
    input_fingerprint: str = Field(description="sha256 of every input file's URI, version and row groups")
    planned_at: str

    def part_uri(self, index: int) -> str:
        return f"{self.output_prefix}/part-{index:05d}.parquet"

    @property
    def manifest_uri(self) -> str:
        return f"{self.output_prefix}/{MANIFEST_NAME}"

    def own_output_name(self, uri: str) -> str | None:
        """The name of `uri` when it is a file this run's commit may replace or remove: a part or the
        manifest directly in the output prefix (never in a sub-folder); otherwise None."""
        folder = self.output_prefix.rstrip("/") + "/"
        if not uri.startswith(folder):
            return None
        name = uri[len(folder) :]
        return name if name == MANIFEST_NAME or PART_NAME.fullmatch(name) else None


def check_output_prefix(plan: BatchPlan, store: ArtifactStore) -> None:
    """Refuse a plan whose output could reach beyond the run's own folder.

    The plan travels through XCom and the store, so scoring and commit check it again before writing
    or deleting: the output prefix must end in the run's folder, and neither be nor hold the artifact
    root or the input.
    """
    from airflow_mlops.storage import is_within, safe_key

    prefix = plan.output_prefix.rstrip("/")
    run_folder = safe_key(plan.run_id)
    if posixpath.basename(prefix) != run_folder:
        raise UnsafePathError(
            f"output prefix {prefix} does not end in the run's folder {run_folder!r} (run id {plan.run_id!r}); "
            "refusing to write or delete there"
        )
    if is_within(prefix, store.root, or_equal=True):
        raise UnsafePathError(f"output prefix {prefix} is or holds the artifact root {store.root}; refusing to write or delete there")
    if is_within(prefix, plan.input_uri, or_equal=True):
        raise UnsafePathError(
            f"the input {plan.input_uri} lies inside the output prefix {prefix}: the commit would replace its "
            "part files; write the output to another folder (inference.output)"
        )


Piece = tuple[str, str | None, int | None, int]  # file, its version, row group (None: csv), rows


def _pieces(uri: str, store: ArtifactStore) -> list[Piece]:
    """Every row group of every part, in order, read from one version of each file.

    The parts' footers are read on `PLAN_THREADS` threads: on S3 each part costs a few round trips,
    which for a folder of thousands of parts would otherwise add up to minutes."""
    from concurrent.futures import ThreadPoolExecutor

    from airflow_mlops.data import list_parts

    parts = list_parts(uri, store)
    with ThreadPoolExecutor(min(PLAN_THREADS, len(parts)), thread_name_prefix="plan") as pool:
        return [piece for pieces in pool.map(lambda part: _file_pieces(part, store), parts) for piece in pieces]


def _file_pieces(part: str, store: ArtifactStore) -> list[Piece]:
    from airflow_mlops.data import data_format, parquet_row_groups

    version = store.version(part)
    groups = parquet_row_groups(part, store, version=version)
    if data_format(part) == "parquet":
        return [(part, version, group, rows) for group, rows in enumerate(groups) if rows]
    return [(part, version, None, groups[0])]


def cut_chunks(pieces: list[Piece], chunk_rows: int, max_chunks: int = MAX_CHUNKS) -> tuple[int, list[Chunk]]:
    """Group consecutive pieces into chunks of about `chunk_rows`; never more than `max_chunks`."""
    total = sum(piece[-1] for piece in pieces)
    target = max(chunk_rows, math.ceil(total / max_chunks)) if total else chunk_rows
    chunks: list[Chunk] = []
    current: list[ChunkPart] = []
    current_rows = 0
    rows_before: dict[str, int] = {}  # per file: the rows of its earlier pieces

    def close() -> None:
        nonlocal current, current_rows
        if current:
            chunks.append(Chunk(index=len(chunks), rows=current_rows, parts=current))
        current, current_rows = [], 0

    for uri, version, group, rows in pieces:
        if current and current[-1].uri == uri and group is not None and current[-1].row_groups is not None:
            current[-1].row_groups.append(group)
            current[-1].rows += rows
        else:
            current.append(ChunkPart(uri=uri, version=version, row_groups=None if group is None else [group], rows=rows,
                                     first_row=rows_before.get(uri, 0)))
        rows_before[uri] = rows_before.get(uri, 0) + rows
        current_rows += rows
        if current_rows >= target:
            close()
    close()
    return target, chunks


def plan_batch(
    config: PipelineConfig,
    registry: Any,
    store: ArtifactStore,
    *,
    run_id: str,
    input_uri: str | None = None,
    output_uri: str | None = None,
    alias: str | None = None,
    version: int | None = None,
    chunk_rows: int | None = None,
    max_chunks: int = MAX_CHUNKS,
) -> BatchPlan:
    """Pin the model version (an explicit version wins over the alias) and cut the input into chunks."""
    import hashlib

    from airflow_mlops.storage import safe_key

    run_folder = safe_key(run_id)  # before anything is read: `..` must never name the output folder
    source = input_uri or config.inference.input
    if not source:
        raise ConfigError(f"{config.pipeline}: inference.input is not set and no input was given")
    name = config.pipeline
    output = _output_folder(output_uri or config.inference.output or f"predictions/{name}", store)
    pinned = registry.get_version(name, version) if version is not None else registry.resolve(name, alias or config.inference.alias)
    carried = _carried_columns(config)
    pieces = _pieces(source, store)
    if pieces:
        _require_input_columns(pieces[0][0], pieces[0][1], store, carried)
    target, chunks = cut_chunks(pieces, chunk_rows or config.inference.chunk_rows, max_chunks)
    # The input's identity, not a hash of its values: the versions pin the bytes (scoring refuses a
    # rewritten file), while hashing every value read cost ~5% of scoring throughput on 2 cores.
    fingerprint = hashlib.sha256()
    for uri, version, group, rows in pieces:
        fingerprint.update(f"{uri}|{version}|{group}|{rows}\n".encode())
    plan = BatchPlan(
        pipeline=name,
        model_name=name,
        model_version=pinned.version,
        artifact_uri=pinned.artifact_uri,
        artifact_sha256=pinned.artifact_sha256,
        run_id=run_id,
        input_uri=store.uri(source),
        output_prefix=store.uri(f"{output}/{run_folder}"),
        id_columns=list(config.data.ids),
        slice_columns=[c for c in carried if c not in config.data.ids],
        chunk_rows=target,
        total_rows=sum(c.rows for c in chunks),
        chunks=chunks,
        row_numbers=config.inference.row_numbers,
        input_fingerprint=fingerprint.hexdigest(),
        planned_at=datetime.now(timezone.utc).isoformat(),
    )
    check_output_prefix(plan, store)
    return plan


def _carried_columns(config: PipelineConfig) -> list[str]:
    """Ids, then the monitored slice columns: what each output row carries besides the model's output.

    Only a pipeline with a `monitoring:` section carries slices (its monitor groups realized performance
    by them); without one, evaluation.slices concern the test set and the scoring input need not hold them.
    """
    slices = [s.column for s in config.monitoring.slices or []] if config.monitoring is not None else []
    carried = list(dict.fromkeys([*config.data.ids, *slices]))
    own = [*OUTPUT_COLUMNS, *(ROW_NUMBER_COLUMNS if config.inference.row_numbers else ())]
    clashing = [c for c in carried if c in own or c.startswith("proba_")]
    if clashing:
        raise ConfigError(
            f"{config.pipeline}: data.ids and monitoring.slices may not name the output's own columns "
            f"({', '.join(own)}, proba_<class>): {', '.join(map(repr, clashing))}; rename them in the input"
        )
    return carried


def _require_input_columns(uri: str, version: str | None, store: ArtifactStore, wanted: list[str]) -> None:
    """Refuse at planning an input whose first file lacks a carried column; scoring checks every file."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from airflow_mlops.data import data_format

    if not wanted:
        return
    with store.open_read(uri, expected_version=version) as source:
        names = pacsv.open_csv(source).schema.names if data_format(uri) == "csv" else pq.ParquetFile(source).schema_arrow.names
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(
            f"{uri}: the scoring input lacks {', '.join(map(repr, missing))}, named in data.ids or monitoring.slices; "
            "the output carries them so the monitor can join labels and compute each slice; add them to the input "
            "or remove them from the pipeline file"
        )


def _output_folder(output: str, store: ArtifactStore) -> str:
    """The folder the run folders go in: a relative one may not climb out of the artifact root
    or be the root itself (run folders would sit among the store's own); absolute paths and URIs
    are the user's explicit choice."""
    from airflow_mlops.storage import climbs_out, is_within
    from airflow_mlops.storage.keys import is_uri_or_absolute

    if climbs_out(output):
        raise UnsafePathError(f"inference output {output!r} climbs out of the artifact root {store.root}; "
                              "use a folder inside it, an absolute path or a URI")
    folder = (output.rstrip("/") or "/") if is_uri_or_absolute(output) else posixpath.normpath(output)
    if is_within(store.uri(folder), store.root, or_equal=True):
        raise UnsafePathError(f"inference output {output!r} is or holds the artifact root {store.root}; "
                              "name a folder inside it")
    return folder
