"""Checks on a dataset's shape and values shared by reading, fingerprinting, splitting, training and scoring.

Each raises a `DataError` that names the column, counts the bad values and says what to do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from airflow_mlops.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ROWS_NAMED = 5


def duplicate_columns(names: Iterable[object]) -> dict[str, int]:
    """Each name that occurs more than once, with how often, in order of first appearance."""
    counts = Counter(str(name) for name in names)
    return {name: count for name, count in counts.items() if count > 1}


def require_unique_columns(names: Iterable[object], source: str) -> None:
    """Raise DataError naming every duplicated column: a duplicate makes `frame[name]` a frame, not a column."""
    duplicated = duplicate_columns(names)
    if duplicated:
        described = ", ".join(f"{name!r} ({count} times)" for name, count in duplicated.items())
        raise DataError(
            f"{source} has duplicate column names: {described}; rename or drop the extra columns "
            "so that every column name is unique"
        )


def _rows(index: pd.Index) -> str:
    shown = ", ".join(map(str, index[:ROWS_NAMED].tolist()))
    return f"rows {shown}, ..." if len(index) > ROWS_NAMED else f"row{'s' if len(index) > 1 else ''} {shown}"


def require_target_values(target: pd.Series, source: str) -> None:
    """Raise DataError when the target has missing or infinite values, naming the count and the first rows."""
    import numpy as np

    missing = target.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"{source}: the target {target.name!r} has {int(missing.sum())} missing value{'s' if missing.sum() > 1 else ''} "
            f"({_rows(target.index[missing])}); drop those rows or fill in their target"
        )
    values = target.to_numpy()
    if values.dtype.kind == "f":
        infinite = np.isinf(values)
        if infinite.any():
            raise DataError(
                f"{source}: the target {target.name!r} has {int(infinite.sum())} infinite value{'s' if infinite.sum() > 1 else ''} "
                f"({_rows(target.index[infinite])}); drop those rows or fix the values upstream"
            )


def require_labelled_rows(frame: pd.DataFrame, target: str, source: str) -> None:
    """Unique column names, at least one row, and a target with a finite value in every row."""
    require_unique_columns(frame.columns, source)
    if len(frame) == 0:
        raise DataError(f"{source} has no rows; check the data's path and any filter applied upstream")
    if target not in frame.columns:
        raise DataError(f"the target column {target!r} is not in {source}")
    require_target_values(frame[target], source)


def require_finite_features(columns: Iterable[tuple[str, np.ndarray]], source: str) -> None:
    """Raise DataError naming each float column that holds inf or -inf (missing values, NaN, are allowed).

    Vectorised per float column; other dtypes cannot hold infinities and are skipped.
    """
    import numpy as np

    infinite = {}
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing or inf - inf sum is expected, not news
        for name, values in columns:
            # A finite sum (one pass, no temporary array) clears the usual column; NaN or overflow falls through to the count.
            if values.dtype.kind == "f" and not np.isfinite(values.sum()):
                count = int(np.count_nonzero(np.isinf(values)))
                if count:
                    infinite[name] = count
    if infinite:
        described = ", ".join(f"{name!r} ({count} value{'s' if count > 1 else ''})" for name, count in infinite.items())
        raise DataError(
            f"{source} has infinite feature values (inf or -inf) in {described}; replace them upstream with a finite "
            "number, or with a missing value (NaN), which every flavor handles"
        )
