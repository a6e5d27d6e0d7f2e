"""Committed batch outputs as streams of Arrow batches: only the parts a manifest lists, each verified."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from airflow_mlops.storage import ArtifactStore

PREDICTION = "prediction"
PROBABILITY_PREFIX = "proba_"
BATCH_ROWS = 65_536


@dataclass(frozen=True)
class ScoredBatch:
    """One committed batch-inference run, as the registry's scoring-run record names it."""

    run_id: str
    version: int
    manifest_uri: str
    committed_at: datetime


def read_manifest(manifest_uri: str, store: ArtifactStore) -> dict[str, Any]:
    if not store.exists(manifest_uri):
        raise DataError(f"{store.uri(manifest_uri)} does not exist: the batch output was never committed")
    return store.read_json(manifest_uri)


def output_schema(manifest_uri: str, store: ArtifactStore) -> pa.Schema | None:
    """The schema of a committed output (its first part's; every part has the same), None without parts."""
    import pyarrow.parquet as pq

    parts = read_manifest(manifest_uri, store)["parts"]
    if not parts:
        return None
    with store.open_read(parts[0]["uri"]) as source:
        return pq.ParquetFile(source).schema_arrow


def output_columns(manifest_uri: str, store: ArtifactStore) -> list[str]:
    """The columns of a committed output."""
    schema = output_schema(manifest_uri, store)
    return list(schema.names) if schema is not None else []


def recorded_classes(schema: pa.Schema | None) -> list[str] | None:
    """The model's classes as a batch output or stored test predictions record them in their metadata;
    None for files written before they did."""
    from airflow_mlops.inference.score import CLASSES_METADATA_KEY

    raw = (schema.metadata or {}).get(CLASSES_METADATA_KEY) if schema is not None else None
    return [str(c) for c in json.loads(raw)] if raw else None


def probability_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c.startswith(PROBABILITY_PREFIX)]


def stored_probability_columns(known: list[str]) -> list[str]:
    """The probability columns an output of a classifier with these classes holds: for two classes only
    the positive (second) class's, otherwise one per class."""
    names = [f"{PROBABILITY_PREFIX}{c}" for c in known]
    return names[1:] if len(names) == 2 else names


def binary_classes(positive: str, seen: list[str]) -> list[str]:
    """Both classes of a two-class output that stores only `positive`'s probability, for files that do not
    record their classes: the other one is the other value seen among the labels and predictions (empty
    text when every value seen is `positive`)."""
    others = sorted({value for value in seen if value != positive})
    return [others[0] if others else "", positive]


def class_probabilities(read: Callable[[str], Any], known: list[str]) -> np.ndarray:
    """The (rows, classes) probabilities from the stored columns (`read(name)` gives one as an array);
    for two classes the first is one minus the second."""
    import numpy as np

    stored = [np.asarray(read(name), dtype=float) for name in stored_probability_columns(known)]
    if len(known) == 2:
        return np.column_stack([1.0 - stored[0], stored[0]])
    return np.column_stack(stored)


def iter_output_batches(manifest_uri: str, store: ArtifactStore, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """`columns` of a committed output, batch by batch; each part is checked against its manifest sha256
    first (`local_path` verifies as it fetches), so a changed part is an IntegrityError, never mixed in."""
    import pyarrow.parquet as pq

    manifest = read_manifest(manifest_uri, store)
    for part in manifest["parts"]:
        with store.local_path(part["uri"], expected_sha256=part["sha256"]) as local:
            parquet = pq.ParquetFile(local)
            missing = [c for c in columns if c not in parquet.schema_arrow.names]
            if missing:
                raise DataError(f"{part['uri']} has no {', '.join(map(repr, missing))} column: the batch was "
                                "scored by a model with other classes, or without the ids or slices asked for")
            yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)
