"""Deterministic train / validation / test splits written to the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_mlops.data.checks import require_target_values, require_unique_columns
from airflow_mlops.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.refs import DatasetRef
    from airflow_mlops.storage import ArtifactStore


def _stratify_labels(frame: pd.DataFrame, target: str, needed: int, what: str) -> pd.Series:
    counts = frame[target].value_counts(dropna=False)
    if len(counts) < 2:
        raise DataError(
            f"cannot stratify the {what} split on {target!r}: it has only one class ({counts.index.tolist()[0]!r}) in "
            f"{len(frame)} rows; a classifier needs two or more: check that data.target names the label column "
            "and that the data was not filtered down to one class"
        )
    rare = counts[counts < needed]
    if len(rare):
        described = ", ".join(f"{label!r} ({count} row{'s' if count != 1 else ''})" for label, count in rare.items())
        raise DataError(
            f"cannot stratify the {what} split on {target!r}: class {described} has fewer than {needed} rows; "
            "add data, merge rare classes, or set data.split.stratify: false"
        )
    return frame[target]


def split_dataset(
    df: pd.DataFrame,
    *,
    target: str,
    validation: float,
    test: float,
    stratify: bool,
    seed: int,
    out_prefix: str,
    store: ArtifactStore,
) -> dict[str, DatasetRef]:
    """Split into train / validation / test parquet files under `out_prefix`.

    The same rows and seed always give the same split. With `validation` 0 there
    is no validation split. Stratification keeps class shares in every split.
    """
    from sklearn.model_selection import train_test_split

    from airflow_mlops.data.fingerprint import fingerprint_table
    from airflow_mlops.data.io import write_table
    from airflow_mlops.refs import DatasetRef

    require_unique_columns(df.columns, "the data")
    if target not in df.columns:
        raise DataError(f"the target column {target!r} is not in the data; columns are {', '.join(map(repr, df.columns))}")
    require_target_values(df[target], "the data")
    if len(df) < 3:
        raise DataError(f"the data has {len(df)} rows; at least 3 are needed to split train, validation and test")
    frame = df.reset_index(drop=True)
    labels = _stratify_labels(frame, target, 2, "test") if stratify else None
    rest, test_frame = train_test_split(frame, test_size=test, random_state=seed, stratify=labels)
    splits = {"test": test_frame}
    if validation > 0:
        share = validation / (1.0 - test)
        labels = _stratify_labels(rest, target, 2, "validation") if stratify else None
        train_frame, validation_frame = train_test_split(rest, test_size=share, random_state=seed, stratify=labels)
        splits["validation"] = validation_frame
    else:
        train_frame = rest
    splits["train"] = train_frame
    refs: dict[str, DatasetRef] = {}
    for name in ("train", "validation", "test"):
        if name not in splits:
            continue
        part = splits[name].reset_index(drop=True)
        written = write_table(part, f"{out_prefix.rstrip('/')}/{name}.parquet", store)
        refs[name] = DatasetRef(
            uri=written.uri, fingerprint=fingerprint_table(part), rows=len(part), columns=[str(c) for c in part.columns]
        )
    return refs
