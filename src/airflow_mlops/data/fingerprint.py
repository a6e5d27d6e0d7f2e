"""Content fingerprints of datasets.

`fingerprint` is the sha256 of (1) the column names and their Arrow types and
(2) a 64-bit hash of every row, fed in row order. Because each row is hashed on
its own, the fingerprint is the same however the rows are split into files,
row groups or batches (re-partitioning), and whichever store holds them. It
changes when any value, column name, column type, column order or row order
changes. Files of different formats agree when their logical types agree
(e.g. int64 and float64 columns written to parquet and to csv); a csv read back
can infer other types (a string column of digits becomes int64), and then the
fingerprint differs, as it should: the model would see different data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow_mlops.data.checks import require_unique_columns

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from airflow_mlops.refs import DatasetRef
    from airflow_mlops.storage import ArtifactStore


def _type_name(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "string"
    if pa.types.is_large_binary(arrow_type):
        return "binary"
    return str(arrow_type)


class _Fingerprinter:
    def __init__(self, source: str) -> None:
        self.digest = hashlib.sha256()
        self.schema: list[tuple[str, str]] | None = None
        self.rows = 0
        self.source = source

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        import pandas as pd

        schema = [(f.name, _type_name(f.type)) for f in batch.schema]
        if self.schema is None:
            require_unique_columns(batch.schema.names, self.source)
            self.schema = schema
            self.digest.update(repr(schema).encode("utf-8"))
        if batch.num_rows == 0:
            return
        frame = batch.to_pandas()
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].astype(object)
        row_hashes = pd.util.hash_pandas_object(frame, index=False, categorize=False).to_numpy()
        self.digest.update(row_hashes.astype("<u8").tobytes())
        self.rows += batch.num_rows

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def fingerprint_batches(batches: Iterable[pa.RecordBatch], source: str = "the data") -> tuple[str, int, list[str]]:
    """(fingerprint, rows, columns) of a stream of record batches; `source` names them in errors."""
    printer = _Fingerprinter(source)
    for batch in batches:
        printer.add(batch)
    return printer.hexdigest(), printer.rows, [name for name, _ in printer.schema or []]


def fingerprint_table(data: pd.DataFrame | pa.Table) -> str:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        table = data
    else:
        require_unique_columns(data.columns, "the data")  # pyarrow would refuse them with a bare ValueError
        table = pa.Table.from_pandas(data, preserve_index=False)
    return fingerprint_batches(table.to_batches(max_chunksize=65_536) or [table])[0]


def fingerprint(uri: str, store: ArtifactStore) -> str:
    from airflow_mlops.data.io import iter_batches

    return fingerprint_batches(iter_batches(uri, store), store.uri(uri))[0]


def dataset_ref(uri: str, store: ArtifactStore) -> DatasetRef:
    """A `DatasetRef` computed by streaming the data once (bounded memory)."""
    from airflow_mlops.data.io import iter_batches
    from airflow_mlops.errors import DataError
    from airflow_mlops.refs import DatasetRef

    digest, rows, columns = fingerprint_batches(iter_batches(uri, store), store.uri(uri))
    if rows == 0:
        raise DataError(f"{store.uri(uri)}: the dataset is empty (0 rows)")
    return DatasetRef(uri=store.uri(uri), fingerprint=digest, rows=rows, columns=columns)
