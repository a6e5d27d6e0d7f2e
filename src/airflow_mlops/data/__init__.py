"""Datasets on any store: parquet and csv, files or folders of parts, streamed, fingerprinted, split."""

from airflow_mlops.data.fingerprint import (
    dataset_ref,
    fingerprint,
    fingerprint_batches,
    fingerprint_table,
)
from airflow_mlops.data.io import (
    data_format,
    iter_batches,
    iter_row_group_batches,
    list_parts,
    parquet_row_groups,
    read_arrow,
    read_table,
    time_ranges,
    write_table,
)
from airflow_mlops.data.split import split_dataset

__all__ = [
    "data_format",
    "dataset_ref",
    "fingerprint",
    "fingerprint_batches",
    "fingerprint_table",
    "iter_batches",
    "iter_row_group_batches",
    "list_parts",
    "parquet_row_groups",
    "read_arrow",
    "read_table",
    "split_dataset",
    "time_ranges",
    "write_table",
]
