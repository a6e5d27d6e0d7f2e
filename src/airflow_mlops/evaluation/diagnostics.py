"""Per-class results, the confusion matrix and calibration of a classifier; the residuals of a regressor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.evaluation.metrics import finite

if TYPE_CHECKING:
    import numpy as np

RESIDUAL_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
DECILES = 10


def diagnose(task: str, y_true: np.ndarray, predictions: np.ndarray, proba: np.ndarray | None,
             classes: list[Any] | None, *, calibration_bins: int = 10) -> dict[str, Any]:
    """Plain JSON: `per_class` and `confusion_matrix` (classifiers), `calibration` (two classes), `residuals`."""
    if task == "regression":
        return {"residuals": _residuals(y_true, predictions)}
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(classes or [])
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predictions, labels=labels, zero_division=0)
    found: dict[str, Any] = {
        "per_class": [{"class": label, "precision": finite(p), "recall": finite(r), "f1": finite(f), "support": int(s)}
                      for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)],
        # Rows are the true classes, columns the predicted ones, both in `labels` order.
        "confusion_matrix": {"labels": labels,
                             "matrix": confusion_matrix(y_true, predictions, labels=labels).tolist()},
    }
    if proba is not None and len(labels) == 2:
        found["calibration"] = _calibration(y_true == labels[1], proba[:, 1], calibration_bins)
    return found


def _calibration(positive: np.ndarray, probability: np.ndarray, bins: int) -> dict[str, Any]:
    """Per non-empty bin of predicted probability: its mean prediction, the observed share of positives, its rows."""
    import numpy as np
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    observed, predicted = calibration_curve(positive, probability, n_bins=bins, strategy="uniform")
    # calibration_curve leaves empty bins out and does not count rows: the same uniform bins, counted.
    totals = np.bincount(np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], probability), minlength=bins)
    return {"bins": bins, "mean_predicted": [float(v) for v in predicted],
            "fraction_positive": [float(v) for v in observed], "rows": [int(v) for v in totals[totals > 0]],
            "brier": finite(brier_score_loss(positive, probability))}


def _residuals(y_true: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """Residual = true - predicted: its mean, spread and quantiles, and its mean per decile of the prediction."""
    import numpy as np

    truth = np.asarray(y_true, dtype="float64")
    predicted = np.asarray(predictions, dtype="float64")
    residual = truth - predicted
    if not len(residual):
        return {"rows": 0}
    by_decile = []
    for number, rows in enumerate(np.array_split(np.argsort(predicted, kind="stable"), DECILES), start=1):
        if len(rows):
            by_decile.append({"decile": number, "rows": len(rows), "prediction_from": finite(predicted[rows].min()),
                              "prediction_to": finite(predicted[rows].max()),
                              "mean_residual": finite(residual[rows].mean())})
    return {
        "rows": len(residual), "mean": finite(residual.mean()), "std": finite(residual.std()),
        "quantiles": {f"p{round(q * 100):02d}": finite(v)
                      for q, v in zip(RESIDUAL_QUANTILES, np.quantile(residual, RESIDUAL_QUANTILES), strict=True)},
        "by_decile": by_decile,
    }
