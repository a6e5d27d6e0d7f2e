"""Read and write parquet / csv datasets on any store: a file or a folder of parts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import ArtifactNotFoundError, DataError
from airflow_mlops.refs import ArtifactRef

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from airflow_mlops.storage import ArtifactStore

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
DATA_SUFFIXES = PARQUET_SUFFIXES + CSV_SUFFIXES
DEFAULT_BATCH_ROWS = 65_536


def _name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _is_part(uri: str) -> bool:
    name = _name(uri)
    return name.lower().endswith(DATA_SUFFIXES) and not name.startswith((".", "_"))


def data_format(uri: str) -> str:
    lowered = uri.lower()
    if lowered.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lowered.endswith(CSV_SUFFIXES):
        return "csv"
    raise DataError(f"{uri}: cannot tell the format; expected a .parquet, .pq or .csv file or a folder of them")


def list_parts(uri: str, store: ArtifactStore) -> list[str]:
    """The data files of a dataset: `[uri]` for a file, the sorted parts of a folder.

    Hidden and bookkeeping files (names starting with `.` or `_`, such as
    `_manifest.json` or `_SUCCESS`) are not parts.
    """
    if store.exists(uri):
        data_format(uri)
        return [store.uri(uri)]
    base = store.uri(uri).rstrip("/")
    parts = [
        u for u in store.list(uri)
        if _is_part(u) and not any(s.startswith((".", "_")) for s in u[len(base) :].split("/") if s)
    ]
    if parts:
        return parts
    if store.is_dir(uri):
        raise DataError(f"{base}: no parquet or csv files under this folder")
    raise ArtifactNotFoundError(f"{base}: no such file or folder")


def _parquet_file(source: Any, uri: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{_name(uri)} is not a parquet file ({uri}): {exc}") from None


def _check_columns(uri: str, available: list[str], columns: list[str] | None) -> None:
    if columns is None:
        return
    missing = [c for c in columns if c not in available]
    if missing:
        raise DataError(
            f"{uri}: missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; "
            f"the data has {', '.join(map(repr, available))}"
        )


def _csv_batches(source: Any, uri: str, columns: list[str] | None, batch_rows: int,
                 on_schema: Callable[[pa.Schema], None] | None = None) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        # Empty text is missing, as a null in parquet is: the same rows train, validate and score alike
        # whatever the file format (pyarrow would otherwise read it as the category '').
        reader = pacsv.open_csv(source, read_options=pacsv.ReadOptions(block_size=1 << 22),
                                convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        if on_schema is not None:
            on_schema(reader.schema)
        _check_columns(uri, reader.schema.names, columns)
        for batch in reader:
            batch = batch.select(columns) if columns is not None else batch
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise DataError(f"{uri}: the csv file is empty") from None
        raise DataError(f"{uri}: malformed csv: {exc}") from None


def _file_batches(
    uri: str, store: ArtifactStore, columns: list[str] | None, batch_rows: int, row_groups: list[int] | None = None,
    version: str | None = None, on_schema: Callable[[pa.Schema], None] | None = None,
) -> Iterator[pa.RecordBatch]:
    # A whole file streamed once is read, not mapped: mapped pages would all stay resident.
    with store.open_read(uri, expected_version=version, mapped=row_groups is not None) as source:
        if data_format(uri) == "csv":
            yield from _csv_batches(source, uri, columns, batch_rows, on_schema)
            return
        parquet = _parquet_file(source, uri)
        if on_schema is not None:
            on_schema(parquet.schema_arrow)
        _check_columns(uri, parquet.schema_arrow.names, columns)
        if row_groups is None:
            # One row group at a time: asked for the whole file, pyarrow's pre-buffering holds every row
            # group it has read until the end (3M x 100 columns: 1.9 GB instead of 0.55 GB).
            for group in range(parquet.num_row_groups):
                yield from parquet.iter_batches(batch_size=batch_rows, columns=columns, row_groups=[group])
            return
        yield from parquet.iter_batches(batch_size=batch_rows, columns=columns, row_groups=row_groups)


def iter_batches(
    uri: str, store: ArtifactStore, columns: list[str] | None = None, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Stream a dataset's record batches: memory is bounded by `batch_rows`, not the file size."""
    for part in list_parts(uri, store):
        yield from _file_batches(part, store, columns, batch_rows)


def parquet_row_groups(uri: str, store: ArtifactStore, version: str | None = None) -> list[int]:
    """Rows in each row group of one parquet file (a csv file counts as one group);
    with `version`, of exactly that version of the file."""
    with store.open_read(uri, expected_version=version) as source:
        if data_format(uri) == "csv":
            return [sum(b.num_rows for b in _csv_batches(source, uri, None, DEFAULT_BATCH_ROWS))]
        metadata = _parquet_file(source, uri).metadata
        return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def iter_row_group_batches(
    uri: str,
    store: ArtifactStore,
    row_groups: list[int] | None,
    columns: list[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    version: str | None = None,
    on_schema: Callable[[pa.Schema], None] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the given row groups of one file (None: all of it, as for csv); with
    `version`, a file rewritten since that version raises `StorageError`. `on_schema`
    sees the file's schema before any batch is read (the file is opened once)."""
    groups = None if data_format(uri) == "csv" else row_groups
    yield from _file_batches(uri, store, columns, batch_rows, row_groups=groups, version=version, on_schema=on_schema)


def read_arrow(uri: str, store: ArtifactStore, columns: list[str] | None = None) -> pa.Table:
    import pyarrow as pa

    parts = list_parts(uri, store)
    tables = []
    for part in parts:
        batches = list(_file_batches(part, store, columns, DEFAULT_BATCH_ROWS))
        if batches:
            tables.append(pa.Table.from_batches(batches))
        else:
            tables.append(_empty_table(part, store, columns))
    try:
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{store.uri(uri)}: the parts do not share one schema: {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"{store.uri(uri)}: the dataset is empty (0 rows)")
    return table


def _empty_table(part: str, store: ArtifactStore, columns: list[str] | None) -> pa.Table:
    with store.open_read(part) as source:
        if data_format(part) == "csv":
            raise DataError(f"{part}: the csv file has a header but no rows")
        schema = _parquet_file(source, part).schema_arrow
    table = schema.empty_table()
    return table.select(columns) if columns is not None else table


def read_table(uri: str, store: ArtifactStore, columns: list[str] | None = None) -> pd.DataFrame:
    """The whole dataset as a DataFrame (use `iter_batches` for data larger than memory)."""
    from airflow_mlops.data.checks import require_unique_columns

    table = read_arrow(uri, store, columns)
    # Arrow keeps a csv header's names as written (no pandas-style `x.1` renaming), so this sees the raw header.
    require_unique_columns(table.column_names, store.uri(uri))
    return table.to_pandas()


def write_table(df: pd.DataFrame | pa.Table, uri: str, store: ArtifactStore, *, format: str | None = None) -> ArtifactRef:
    """Write a DataFrame (or Arrow table) as parquet or csv; atomic through the store."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    kind = format or data_format(uri)
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    if kind not in {"parquet", "csv"}:
        raise DataError(f"{uri}: unknown format {kind!r}; expected parquet or csv")
    with store.staging_file(uri, suffix=f".{kind}") as temp:
        if kind == "parquet":
            pq.write_table(table, temp)
        else:
            pacsv.write_csv(table, temp)
        return store.write_file(uri, temp, move=True)


def _schema(part: str, store: ArtifactStore) -> pa.Schema:
    with store.open_read(part) as source:
        if data_format(part) == "csv":
            schema: list[pa.Schema] = []
            for _ in _csv_batches(source, part, None, DEFAULT_BATCH_ROWS, on_schema=schema.append):
                break
            return schema[0]
        return _parquet_file(source, part).schema_arrow


def time_ranges(uri: str, store: ArtifactStore) -> list[dict[str, Any]]:
    """The earliest and latest value of each date or timestamp column, `{column, start, end}` in ISO 8601
    (empty when the data has no such column). Reads only those columns, batch by batch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = list_parts(uri, store)
    columns = [f.name for f in _schema(parts[0], store) if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
    if not columns:
        return []
    bounds: dict[str, list[Any]] = {}
    for batch in iter_batches(uri, store, columns=columns):
        for name in columns:
            found = pc.min_max(batch.column(name)).as_py()
            if found["min"] is None:
                continue
            low, high = bounds.get(name, [found["min"], found["max"]])
            bounds[name] = [min(low, found["min"]), max(high, found["max"])]
    return [{"column": name, "start": bounds[name][0].isoformat(), "end": bounds[name][1].isoformat()}
            for name in columns if name in bounds]
