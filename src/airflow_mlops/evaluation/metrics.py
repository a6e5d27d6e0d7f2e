"""Metrics by task from sklearn.metrics, each knowing whether higher is better."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import METRICS
from airflow_mlops.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

GREATER_IS_BETTER = {name: higher for name, (_, higher, _) in METRICS.items()}
NEEDS_PROBA = {name for name, (_, _, proba) in METRICS.items() if proba}


def greater_is_better(metric: str, custom: dict[str, Any] | None = None) -> bool:
    if custom and metric in custom:
        return bool(custom[metric].greater_is_better)
    if metric not in GREATER_IS_BETTER:
        raise ConfigError(f"unknown metric {metric!r}; expected one of {', '.join(GREATER_IS_BETTER)} or a custom metric")
    return GREATER_IS_BETTER[metric]


def fmt(value: float | None) -> str:
    """A metric in a sentence: four significant digits, 'n/a' when undefined."""
    return "n/a" if value is None else f"{value:.4g}"


def finite(value: Any) -> float | None:
    """A float for JSON: None for NaN and infinities."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def compute_metrics(
    task: str,
    names: list[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    y_proba: np.ndarray | None = None,
    classes: list[Any] | None = None,
    custom: dict[str, Any] | None = None,
    sample_weight: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Each named metric; None where it is undefined on this data (e.g. roc_auc with one class).

    `sample_weight` counts each row that many times: monitoring passes distinct (label, prediction)
    cells with their counts, which gives the exact metric of millions of rows from a few hundred.
    """
    import warnings

    import numpy as np
    from sklearn import metrics as sk
    from sklearn.exceptions import UndefinedMetricWarning

    results: dict[str, float | None] = {}
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    for name in names:
        if custom and name in custom:
            from airflow_mlops.dotted import import_object

            function = import_object(custom[name].path, f"evaluation.custom_metrics.{name}")
            results[name] = finite(function(y_true, y_proba if custom[name].needs_proba else y_pred))
            continue
        try:
            with warnings.catch_warnings():
                # An undefined metric (roc_auc on one class) is None here, and the gate says why.
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                results[name] = finite(_metric(name, task, y_true, y_pred, y_proba, classes, sk, np, sample_weight))
        except ValueError:
            results[name] = None
    return results


def _metric(name: str, task: str, y_true: Any, y_pred: Any, proba: Any, classes: Any, sk: Any, np: Any,
            weight: Any = None) -> float:
    w = {"sample_weight": weight}
    if task == "regression":
        if name == "rmse":
            return math.sqrt(sk.mean_squared_error(y_true, y_pred, **w))
        if name == "mae":
            return sk.mean_absolute_error(y_true, y_pred, **w)
        if name == "r2":
            return sk.r2_score(y_true, y_pred, **w)
        if name == "mape":
            return sk.mean_absolute_percentage_error(y_true, y_pred, **w)
        raise ConfigError(f"{name} is not a regression metric")
    binary = task == "binary_classification"
    labels = list(classes)
    if name == "accuracy":
        return sk.accuracy_score(y_true, y_pred, **w)
    if name == "balanced_accuracy":
        return sk.balanced_accuracy_score(y_true, y_pred, **w)
    if name in {"f1", "precision", "recall"}:
        function = {"f1": sk.f1_score, "precision": sk.precision_score, "recall": sk.recall_score}[name]
        if binary:
            return function(y_true, y_pred, pos_label=labels[1], zero_division=0, **w)
        return function(y_true, y_pred, labels=labels, average="macro", zero_division=0, **w)
    if proba is None:
        raise ValueError(f"{name} needs probabilities")
    if name == "log_loss":
        return sk.log_loss(y_true, proba, labels=labels, **w)
    positive = (y_true == labels[-1]).astype(int) if binary else None
    if name == "roc_auc":
        if binary:
            return sk.roc_auc_score(positive, proba[:, 1], **w)
        return sk.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels, **w)
    if name == "pr_auc" and binary:
        return sk.average_precision_score(positive, proba[:, 1], **w)
    if name == "brier" and binary:
        return sk.brier_score_loss(positive, proba[:, 1], **w)
    raise ConfigError(f"{name} is not defined for {task}")
