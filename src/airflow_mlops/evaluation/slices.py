"""Slices of the test set (per value of a column, or per bin of a numeric one) and their gates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.evaluation.metrics import compute_metrics, fmt, greater_is_better

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from airflow_mlops.config.schema import EvaluationSlice

EPSILON = 1e-12
Check = tuple[str, bool, str]  # (check name, passed, sentence), as the gate's report lists them


@dataclass(frozen=True)
class Group:
    """Rows of the test set that share a value or a bin of one column."""

    key: str  # "island=Dream", "age in [30, 50)", "age missing"
    name: str  # the group alone: "Dream", "age in [30, 50)"
    positions: np.ndarray


@dataclass(frozen=True)
class Predicted:
    """The test set's labels with the candidate's predictions: computed once, sliced by position."""

    task: str
    y_true: np.ndarray
    predictions: np.ndarray
    proba: np.ndarray | None
    classes: list[Any] | None
    custom: dict[str, Any]

    def metrics(self, names: list[str], positions: np.ndarray) -> dict[str, float | None]:
        proba = self.proba[positions] if self.proba is not None else None
        return compute_metrics(self.task, names, self.y_true[positions], self.predictions[positions], proba,
                               self.classes, self.custom)

    def why_undefined(self, positions: np.ndarray) -> str:
        if self.task != "regression" and len({*self.y_true[positions].tolist()}) < 2:
            return "; it has only one class"
        return ""


def _edge(value: float) -> str:
    return f"{value:.4g}"


def groups(series: pd.Series, bins: int | list[float] | None) -> list[Group]:
    """One group per value of `series` (missing values are a group), or per bin of a numeric one.

    `bins`: a number of quantile bins of this data, or increasing edges; a bin holds its lower edge
    and, for the last one, its upper edge too. Rows outside the edges and missing rows are groups of their own.
    Raises ValueError when `bins` is set on a column that is not numeric.
    """
    import numpy as np

    column = str(series.name)
    if bins is None:
        found = series.groupby(series, dropna=False, observed=True, sort=True).indices
        return [Group(f"{column}={value}", str(value), np.asarray(rows)) for value, rows in found.items()]
    if series.dtype.kind not in "iuf":
        raise ValueError(f"column {column!r} is {series.dtype}, not numeric: bins need numbers")
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    present = ~np.isnan(values)
    if isinstance(bins, int):
        if not present.any():
            return [Group(f"{column} missing", f"{column} missing", np.flatnonzero(~present))]
        edges = np.unique(np.quantile(values[present], np.linspace(0.0, 1.0, bins + 1)))
        edges = np.append(edges, edges[-1]) if len(edges) == 1 else edges  # one value: the bin [v, v]
    else:
        edges = np.asarray(bins, dtype="float64")
    last = len(edges) - 2
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, last)
    inside = present & (values >= edges[0]) & (values <= edges[-1])
    found: list[Group] = []
    for position in range(last + 1):
        rows = np.flatnonzero(inside & (index == position))
        if len(rows):
            close = "]" if position == last else ")"
            name = f"{column} in [{_edge(edges[position])}, {_edge(edges[position + 1])}{close}"
            found.append(Group(name, name, rows))
    for name, rows in ((f"{column} outside [{_edge(edges[0])}, {_edge(edges[-1])}]", np.flatnonzero(present & ~inside)),
                       (f"{column} missing", np.flatnonzero(~present))):
        if len(rows):
            found.append(Group(name, name, rows))
    return found


def evaluate_slices(
    slices: list[EvaluationSlice], test: pd.DataFrame, predicted: Predicted, overall: dict[str, float | None],
    primary: str,
) -> tuple[dict[str, Any], list[Check]]:
    """Each slice's rows and metrics ({key: {...}}), and the checks of the gated slices.

    A slice below its `min_size` is listed, not scored nor gated. A gated slice whose column is missing,
    or whose gated metric is undefined, fails its check: what a reviewer asked to see cannot be shown.
    """
    found: dict[str, Any] = {}
    checks: list[Check] = []
    for item in slices:
        column = item.column
        if column not in test.columns:
            found[column] = {"error": f"column {column!r} is not in the test set"}
            if item.gated:
                checks.append((f"slices of {column}", False,
                               f"slice column {column!r} is not in the test set, so its gates cannot be checked"))
            continue
        try:
            parts = groups(test[column], item.bins)
        except ValueError as exc:
            found[column] = {"error": str(exc)}
            if item.gated:
                checks.append((f"slices of {column}", False, f"slices of {column!r} cannot be gated: {exc}"))
            continue
        names = list(dict.fromkeys([primary, *item.gate_metrics()]))
        for group in parts:
            rows = len(group.positions)
            if rows < item.min_size:
                found[group.key] = {"rows": rows, "note": f"fewer than {item.min_size} rows: not scored"}
                continue
            values = predicted.metrics(names, group.positions)
            failures = []
            for check in _slice_checks(item, group.key, values, overall, predicted.why_undefined(group.positions),
                                       predicted.custom):
                checks.append(check)
                if not check[1]:
                    failures.append(check[2])
            found[group.key] = {"rows": rows, **values, **({"failures": failures} if failures else {})}
    return found, checks


def _slice_checks(item: EvaluationSlice, key: str, values: dict[str, float | None], overall: dict[str, float | None],
                  why: str, custom: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    for metric, bound in item.thresholds.items():
        value = values.get(metric)
        for limit, below in ((bound.min, True), (bound.max, False)):
            if limit is None:
                continue
            name = f"{metric} on {key} {'>=' if below else '<='} {limit}"
            if value is None:
                checks.append((name, False, f"{metric} on {key} cannot be computed{why}, so its "
                                            f"{'minimum' if below else 'maximum'} {limit} cannot be checked"))
                continue
            ok = value >= limit if below else value <= limit
            where = ("at or above" if ok else "below") if below else ("at or below" if ok else "above")
            checks.append((name, ok, f"{metric} on {key} is {fmt(value)}, {where} {limit}"))
    for metric, allowed in item.max_gap.items():
        value, reference = values.get(metric), overall.get(metric)
        name = f"{metric} on {key} within {allowed} of overall"
        if value is None or reference is None:
            checks.append((name, False, f"{metric} on {key} or overall cannot be computed{why}, so the allowed gap "
                                        f"{allowed} cannot be checked"))
            continue
        higher = greater_is_better(metric, custom)
        gap = (reference - value) if higher else (value - reference)
        side = "below" if higher else "above"
        ok = gap <= allowed + EPSILON
        if gap <= 0:
            sentence = f"{metric} on {key} is {fmt(value)}, no worse than the overall {fmt(reference)}"
        else:
            sentence = (f"{metric} on {key} is {fmt(value)}, {fmt(gap)} {side} the overall {fmt(reference)}, "
                        f"{'within' if ok else 'more than'} the allowed gap {allowed}")
        checks.append((name, ok, sentence))
    return checks
