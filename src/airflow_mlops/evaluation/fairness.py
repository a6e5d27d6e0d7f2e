"""Group fairness of a classifier's decisions (fairlearn.metrics), with the groups and rates behind each value."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.evaluation.metrics import finite, fmt
from airflow_mlops.evaluation.slices import Check, groups

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from airflow_mlops.config.schema import FairnessConfig

RATES = {"selection_rate": "selection rate", "true_positive_rate": "true positive rate",
         "false_positive_rate": "false positive rate"}
# Each metric: the rates it compares across groups, and whether it is their largest difference or smallest ratio.
DEFINITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "demographic_parity_difference": (("selection_rate",), "difference"),
    "demographic_parity_ratio": (("selection_rate",), "ratio"),
    "equalized_odds_difference": (("true_positive_rate", "false_positive_rate"), "difference"),
    "equalized_odds_ratio": (("true_positive_rate", "false_positive_rate"), "ratio"),
    "equal_opportunity_difference": (("true_positive_rate",), "difference"),
    "equal_opportunity_ratio": (("true_positive_rate",), "ratio"),
}


def _worse(kind: str, a: float | None, b: float | None) -> bool:
    """Is `a` a worse (less fair) value than `b`: a larger difference or a smaller ratio."""
    if a is None:
        return False
    return b is None or (a > b if kind == "difference" else a < b)


def _group_rates(y_true: np.ndarray, predictions: np.ndarray, group: np.ndarray, names: list[str],
                 positive: Any) -> pd.DataFrame:
    """Each group's selection, true positive and false positive rate for `positive` (one against the rest).

    `group` holds each row's index into `names`. fairlearn sees one weighted row per distinct (group, truth,
    decision): the same rates as from every row, at a cost that does not grow with the test set.
    """
    import numpy as np
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    cells = group * 4 + (y_true == positive) * 2 + (predictions == positive)
    counts = np.bincount(cells, minlength=len(names) * 4)
    present = np.flatnonzero(counts)
    metrics = {"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
               "false_positive_rate": false_positive_rate}
    frame = MetricFrame(
        metrics=metrics, y_true=(present // 2) % 2 == 1, y_pred=present % 2 == 1,
        sensitive_features=np.array(names, dtype=object)[present // 4],
        sample_params={name: {"sample_weight": counts[present]} for name in metrics},
    )
    return frame.by_group


def _measure(metric: str, rates: pd.DataFrame) -> tuple[float | None, str]:
    """The metric from the groups' rates (fairlearn's between-groups difference or ratio), and its reason in words:
    the rate that decides it, with its lowest and highest group."""
    names, kind = DEFINITIONS[metric]
    value: float | None = None
    detail = ""
    for rate in names:
        column = rates[rate]
        low, high = column.idxmin(), column.idxmax()
        span = finite(column.max() - column.min()) if kind == "difference" else (
            finite(column.min() / column.max()) if column.max() > 0 else None)
        if detail == "" or _worse(kind, span, value):
            value = span
            detail = f"{RATES[rate]} {low} {fmt(finite(column[low]))}, {high} {fmt(finite(column[high]))}"
    return value, detail


def evaluate_fairness(
    fairness: FairnessConfig, test: pd.DataFrame, y_true: np.ndarray, predictions: np.ndarray, classes: list[Any],
) -> tuple[dict[str, Any], list[Check]]:
    """Per sensitive column: each group's rows and rates, each metric with the groups behind it; the limit checks.

    Binary classifiers compare decisions for the positive (second) class; multiclass ones each class against the
    rest, keeping the least fair class. Groups below `min_group_size` rows are listed and left out.
    """
    import numpy as np

    positives = classes[1:] if len(classes) == 2 else list(classes)
    found: dict[str, Any] = {}
    checks: list[Check] = []
    limits = [(metric, limit, "max") for metric, limit in fairness.max.items()]
    limits += [(metric, limit, "min") for metric, limit in fairness.min.items()]
    for item in fairness.sensitive:
        column = item.column
        if column not in test.columns:
            found[column] = {"error": f"sensitive column {column!r} is not in the test set"}
            checks += [(f"{metric} on {column}", False, f"{metric} on {column} cannot be computed: the sensitive "
                        f"column {column!r} is not in the test set") for metric, _, _ in limits]
            continue
        try:
            parts = groups(test[column], item.bins)
        except ValueError as exc:
            found[column] = {"error": str(exc)}
            checks += [(f"{metric} on {column}", False, f"{metric} on {column} cannot be computed: {exc}")
                       for metric, _, _ in limits]
            continue
        kept = [g for g in parts if len(g.positions) >= fairness.min_group_size]
        result: dict[str, Any] = {
            "groups": {g.name: {"rows": len(g.positions)} for g in parts},
            "left_out": {g.name: len(g.positions) for g in parts if len(g.positions) < fairness.min_group_size},
            "metrics": {}, "details": {},
        }
        found[column] = result
        if len(kept) < 2:
            result["note"] = (f"fewer than two groups of {column} have at least {fairness.min_group_size} rows: "
                              "nothing to compare")
        else:
            rows = np.concatenate([g.positions for g in kept])
            group = np.repeat(np.arange(len(kept)), [len(g.positions) for g in kept])
            by_class = {positive: _group_rates(y_true[rows], predictions[rows], group, [g.name for g in kept],
                                               positive)
                        for positive in positives}
            for metric in fairness.metrics or []:
                kind = DEFINITIONS[metric][1]
                best: tuple[float | None, str] = (None, "")
                for positive, rates in by_class.items():
                    value, detail = _measure(metric, rates)
                    if len(positives) > 1:
                        detail = f"class {positive}: {detail}"
                    if best[1] == "" or _worse(kind, value, best[0]):
                        best = (value, detail)
                result["metrics"][metric], result["details"][metric] = best
            if len(positives) == 1:
                rates = by_class[positives[0]]
                for name in rates.index:
                    result["groups"][str(name)].update({rate: finite(rates.at[name, rate]) for rate in RATES})
                result["positive_class"] = positives[0]
        column_checks = [_limit_check(column, metric, limit, side, result) for metric, limit, side in limits]
        failures = [sentence for _, ok, sentence in column_checks if not ok]
        if failures:
            result["failures"] = failures
        checks += column_checks
    return found, checks


def _limit_check(column: str, metric: str, limit: float, side: str, result: dict[str, Any]) -> Check:
    name = f"{metric} on {column} {'<=' if side == 'max' else '>='} {limit}"
    value = result["metrics"].get(metric)
    if value is None:
        why = result.get("note") or "a group's rate is zero or undefined"
        return name, False, f"{metric} on {column} cannot be computed ({why}), so its {side}imum {limit} cannot be checked"
    ok = value <= limit if side == "max" else value >= limit
    where = ("at or below" if ok else "above") if side == "max" else ("at or above" if ok else "below")
    return name, ok, f"{metric} on {column} is {fmt(value)} ({result['details'][metric]}), {where} {limit}"
