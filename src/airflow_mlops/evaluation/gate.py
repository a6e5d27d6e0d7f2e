"""The evaluation gate: thresholds, a dummy baseline, an overfitting guard, champion/challenger."""

from __future__ import annotations

import html
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.data.checks import require_labelled_rows
from airflow_mlops.evaluation.diagnostics import diagnose
from airflow_mlops.evaluation.explain import explain
from airflow_mlops.evaluation.fairness import evaluate_fairness
from airflow_mlops.evaluation.metrics import compute_metrics, fmt, greater_is_better
from airflow_mlops.evaluation.slices import Predicted, evaluate_slices
from airflow_mlops.refs import GateResult

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.refs import ArtifactRef
    from airflow_mlops.storage import ArtifactStore
    from airflow_mlops.training import LoadedModel

EPSILON = 1e-12
TEST_PREDICTIONS_NAME = "test_predictions.parquet"
TEST_LABEL = "label"  # the stored test predictions' column of true values


@dataclass
class Evaluation:
    gate: GateResult
    record: dict[str, Any]


def predict(model: LoadedModel, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """(predictions, probabilities or None for regression)."""
    proba = model.predict_proba(test) if model.task != "regression" else None
    return model.predict(test), proba


def score_model(model: LoadedModel, test: pd.DataFrame, target: str, names: list[str], custom: dict[str, Any]) -> dict[str, float | None]:
    predictions, proba = predict(model, test)
    return compute_metrics(model.task, names, test[target].to_numpy(), predictions, proba, model.classes, custom)


def store_test_predictions(
    config: PipelineConfig, model: LoadedModel, test: pd.DataFrame, predictions: np.ndarray, proba: np.ndarray | None,
    store: ArtifactStore, path: str,
) -> ArtifactRef:
    """The test set's labels, predictions and probabilities (named as in a batch output), with the slice columns.

    Monitoring calibrates estimated performance on them and compares each batch's predictions with them.
    """
    import pyarrow as pa

    from airflow_mlops.data import write_table
    from airflow_mlops.inference.score import probability_outputs, with_classes

    columns: dict[str, Any] = {TEST_LABEL: pa.array(test[config.data.target].to_numpy()),
                               "prediction": pa.array(predictions)}
    if proba is not None:
        columns.update(probability_outputs(model.classes, proba))
    monitored = config.monitoring.slices if config.monitoring is not None else []
    sensitive = config.evaluation.fairness.sensitive if config.evaluation.fairness is not None else []
    for column in dict.fromkeys(s.column for s in [*(monitored or []), *config.evaluation.slices, *sensitive]):
        if column in test.columns and column not in columns:  # a slice named like an output column is left out
            columns[column] = pa.Array.from_pandas(test[column])
    return write_table(with_classes(pa.table(columns), model.classes), path, store)


def _why_undefined(task: str, y_true: pd.Series) -> str:
    """The usual reason a metric is undefined on a test set, or '' when it is not that."""
    if task != "regression":
        classes = y_true.unique().tolist()  # plain values: a label reads 1, not np.int64(1)
        if len(classes) < 2:
            return (f": it has only one class ({classes[0]!r}); keep data.split.stratify: true "
                    "or add rows of every class to the data")
    return ""


def _baseline(task: str, test: pd.DataFrame, target: str, names: list[str], classes: list[Any] | None, custom: dict[str, Any]) -> dict[str, float | None]:
    """A constant predictor fit on the test labels themselves: the most a model that ignores the features can do."""
    import numpy as np
    from sklearn.dummy import DummyClassifier, DummyRegressor

    y = test[target].to_numpy()
    features = np.zeros((len(test), 1))
    if task == "regression":
        dummy = DummyRegressor(strategy="mean").fit(features, y)
        return compute_metrics(task, names, y, dummy.predict(features), None, None, custom)
    dummy = DummyClassifier(strategy="prior").fit(features, y)
    proba = np.zeros((len(test), len(classes)))
    for index, label in enumerate(dummy.classes_):
        proba[:, classes.index(label.item() if hasattr(label, "item") else label)] = dummy.predict_proba(features)[:, index]
    return compute_metrics(task, names, y, dummy.predict(features), proba, classes, custom)


def evaluate_candidate(
    config: PipelineConfig,
    candidate: LoadedModel,
    test: pd.DataFrame,
    store: ArtifactStore,
    *,
    report_path: str,
    champion: LoadedModel | None = None,
    champion_version: int | None = None,
    train_metrics: dict[str, Any] | None = None,
    validation_metrics: dict[str, Any] | None = None,
    test_fingerprint: str | None = None,
) -> Evaluation:
    """Score the candidate (and the champion) on `test` and apply every configured rule."""
    evaluation = config.evaluation
    target = config.data.target
    primary = evaluation.primary_metric
    names = list(evaluation.metrics)
    custom = evaluation.custom_metrics
    higher = greater_is_better(primary, custom)
    lines: list[tuple[str, bool, str]] = []
    failures: list[str] = []

    def check(name: str, ok: bool, sentence: str) -> None:
        lines.append((name, ok, sentence))
        if not ok:
            failures.append(sentence)

    require_labelled_rows(test, target, "the test set")
    predictions, proba = predict(candidate, test)  # once: for the metrics and the stored test predictions
    metrics = compute_metrics(candidate.task, names, test[target].to_numpy(), predictions, proba, candidate.classes, custom)
    value = metrics.get(primary)
    if value is None:
        reason = _why_undefined(candidate.task, test[target])
        check("primary metric", False, f"{primary} cannot be computed on this test set ({len(test)} rows){reason}")

    if not evaluation.thresholds:
        lines.append(("thresholds", True, "no thresholds configured: no absolute bound is checked"))
    for name, bound in evaluation.thresholds.items():
        observed = metrics.get(name)
        if bound.min is not None:
            ok = observed is not None and observed >= bound.min
            check(f"{name} >= {bound.min}", ok, f"{name} {fmt(observed)} is {'at or above' if ok else 'below'} the minimum {bound.min}")
        if bound.max is not None:
            ok = observed is not None and observed <= bound.max
            check(f"{name} <= {bound.max}", ok, f"{name} {fmt(observed)} is {'at or below' if ok else 'above'} the maximum {bound.max}")

    baseline: dict[str, Any] = {}
    if evaluation.baseline and value is not None:
        baseline = _baseline(candidate.task, test, target, [primary], candidate.classes, custom)
        base = baseline.get(primary)
        ok = base is None or (value > base if higher else value < base)
        check("baseline", ok, f"{primary} {fmt(value)} {'beats' if ok else 'does not beat'} a constant baseline ({fmt(base)})")

    if evaluation.max_overfit_gap is not None and train_metrics and validation_metrics:
        fitted, held_out = train_metrics.get(primary), validation_metrics.get(primary)
        if fitted is not None and held_out is not None:
            gap = (fitted - held_out) if higher else (held_out - fitted)
            ok = gap <= evaluation.max_overfit_gap
            check("overfitting", ok, f"train-validation gap of {primary} is {gap:.4g}; allowed {evaluation.max_overfit_gap}")

    champion_metrics: dict[str, Any] = {}
    comparison = evaluation.champion
    if champion_version is None:
        ok = comparison.on_missing == "pass"
        check("champion", ok, f"no champion yet: the comparison {'passes' if ok else 'fails'} (champion.on_missing: {comparison.on_missing})")
    elif champion is None:
        check("champion", False, f"champion v{champion_version} could not be loaded, so the candidate cannot be compared with it")
    else:
        try:
            champion_metrics = score_model(champion, test, target, names, custom)
        except Exception as exc:  # any scoring problem is a named gate failure
            check("champion", False, f"champion v{champion_version} cannot be scored on this test set: {exc}")
        else:
            reference = champion_metrics.get(primary)
            if reference is None or value is None:
                check("champion", False, f"{primary} of champion v{champion_version} or of the candidate is undefined")
            else:
                required = comparison.min_improvement * (abs(reference) if comparison.relative else 1.0)
                improvement = (value - reference) if higher else (reference - value)
                how = f"{comparison.min_improvement:.1%} relative" if comparison.relative else f"{required:.4g}"
                if abs(improvement) <= EPSILON and required <= EPSILON and comparison.on_tie == "reject":
                    check("champion", False, f"{primary} {fmt(value)} ties champion v{champion_version} "
                                             f"({fmt(reference)}): a challenger must beat it (champion.on_tie: reject)")
                else:
                    ok = improvement >= required - EPSILON
                    check("champion", ok, f"{primary} {fmt(value)} {'improves' if ok else 'does not improve'} on "
                                          f"champion v{champion_version} ({fmt(reference)}) by at least {how}")

    y_true = test[target].to_numpy()
    predicted = Predicted(candidate.task, y_true, predictions, proba, candidate.classes, custom)
    slice_metrics, slice_checks = evaluate_slices(evaluation.slices, test, predicted, metrics, primary)
    fairness: dict[str, Any] = {}
    if evaluation.fairness is not None:
        fairness, fairness_checks = evaluate_fairness(evaluation.fairness, test, y_true, predictions, candidate.classes)
        slice_checks += fairness_checks
    for name, ok, sentence in slice_checks:
        check(name, ok, sentence)
    diagnostics = (diagnose(candidate.task, y_true, predictions, proba, candidate.classes,
                            calibration_bins=evaluation.diagnostics.calibration_bins)
                   if evaluation.diagnostics.enabled else {})
    explanations = (explain(candidate, test, target, primary, evaluation.explanations, custom)
                    if evaluation.explanations.enabled else {})
    passed = not failures
    summary = (f"{primary} {fmt(value)} on {len(test)} test rows; "
               + ("all checks passed" if passed else f"{len(failures)} check{'s' if len(failures) > 1 else ''} failed"))
    stored = store_test_predictions(config, candidate, test, predictions, proba, store,
                                    posixpath.join(posixpath.dirname(report_path), TEST_PREDICTIONS_NAME))
    report = store.write_bytes(report_path, _report(config, metrics, champion_metrics, baseline, lines, slice_metrics,
                                                    summary, fairness, diagnostics, explanations).encode())
    gate = GateResult(
        gate="evaluation", passed=passed, policy=evaluation.on_failure, summary=summary,
        metrics={"candidate": metrics, "champion": champion_metrics, "baseline": baseline,
                 "champion_version": champion_version, "primary_metric": primary},
        failures=failures, report=report,
    )
    record = {"metrics": metrics, "passed": passed, "dataset_fingerprint": test_fingerprint,
              "slice_metrics": slice_metrics, "compared_to_version": champion_version, "report_uri": report.uri,
              "predictions_uri": stored.uri, "predictions_sha256": stored.sha256, "fairness": fairness,
              "diagnostics": diagnostics, "explanations": explanations}
    return Evaluation(gate=gate, record=record)


def _report(config: PipelineConfig, metrics: dict[str, Any], champion: dict[str, Any], baseline: dict[str, Any],
            lines: list[tuple[str, bool, str]], slices: dict[str, Any], summary: str, fairness: dict[str, Any],
            diagnostics: dict[str, Any], explanations: dict[str, Any]) -> str:
    e = html.escape
    metric_rows = "".join(
        f"<tr><td>{e(name)}</td><td>{fmt(value)}</td><td>{fmt(champion.get(name)) if champion else ''}</td>"
        f"<td>{fmt(baseline.get(name)) if name in baseline else ''}</td></tr>"
        for name, value in metrics.items()
    )
    check_rows = "".join(
        f"<tr class={'pass' if ok else 'fail'}><td>{e(name)}</td><td>{'pass' if ok else 'FAIL'}</td><td>{e(text)}</td></tr>"
        for name, ok, text in lines
    )
    slice_table = _slice_table(slices)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Evaluation</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:4px 8px}td.num{text-align:right}.fail{background:#fde2e2}.pass{background:#e6f6e6}</style></head><body>"
        f"<h1>Evaluation of {e(config.pipeline)}</h1><p>{e(summary)}</p>"
        f"<h2>Checks</h2><table><tr><th>check</th><th>result</th><th>detail</th></tr>{check_rows}</table>"
        f"<h2>Metrics</h2><table><tr><th>metric</th><th>candidate</th><th>champion</th><th>baseline</th></tr>{metric_rows}</table>"
        + (f"<h2>Slices</h2>{slice_table}" if slices else "")
        + (f"<h2>Fairness</h2>{_fairness_tables(fairness)}" if fairness else "")
        + _diagnostics_tables(diagnostics) + _importance_tables(explanations)
        + "</body></html>"
    )


def _slice_table(slices: dict[str, Any]) -> str:
    """Per-slice results as an HTML table: rows, each metric, and why a slice was not scored."""
    e = html.escape
    columns = sorted({key for values in slices.values() for key in values} - {"rows", "note", "error", "failures"})
    head = "".join(f"<th>{e(c)}</th>" for c in ["slice", "rows", *columns, "note"])
    body = "".join(
        f"<tr><td>{e(key)}</td><td class=num>{values.get('rows', '')}</td>"
        + "".join(f"<td class=num>{fmt(values.get(c)) if c in values else ''}</td>" for c in columns)
        + f"<td>{e('; '.join(values.get('failures') or []) or str(values.get('error') or values.get('note') or ''))}</td></tr>"
        for key, values in sorted(slices.items())
    )
    return f"<table class=slices><tr>{head}</tr>{body}</table>"


def _rows(header: list[str], rows: list[list[Any]], css: str) -> str:
    """An HTML table: numbers right-aligned and shown with four significant digits."""
    e = html.escape

    def cell(value: Any) -> str:
        if isinstance(value, float) or value is None:
            return f"<td class=num>{fmt(value)}</td>"
        return f"<td class=num>{value}</td>" if isinstance(value, int) else f"<td>{e(str(value))}</td>"

    head = "".join(f"<th>{e(h)}</th>" for h in header)
    return f"<table class={css}><tr>{head}</tr>" + "".join(f"<tr>{''.join(map(cell, r))}</tr>" for r in rows) + "</table>"


def _fairness_tables(fairness: dict[str, Any]) -> str:
    parts = []
    for column, result in fairness.items():
        e = html.escape
        if "error" in result:
            parts.append(f"<h3>{e(column)}</h3><p>{e(result['error'])}</p>")
            continue
        metrics = [[name, value, result["details"].get(name, "")] for name, value in result["metrics"].items()]
        groups = [[name, values.get("rows"), *(values.get(rate) for rate in ("selection_rate", "true_positive_rate",
                                                                          "false_positive_rate"))]
                  for name, values in result["groups"].items()]
        parts.append(f"<h3>{e(column)}</h3>" + (f"<p>{e(result['note'])}</p>" if result.get("note") else "")
                     + _rows(["metric", "value", "groups behind it"], metrics, "fairness")
                     + _rows(["group", "rows", "selection rate", "true positive rate", "false positive rate"], groups,
                             "groups"))
    return "".join(parts)


def _diagnostics_tables(diagnostics: dict[str, Any]) -> str:
    parts = []
    if "per_class" in diagnostics:
        parts.append("<h2>Per class</h2>" + _rows(
            ["class", "precision", "recall", "f1", "support"],
            [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in diagnostics["per_class"]],
            "per-class"))
        matrix = diagnostics["confusion_matrix"]
        parts.append("<h2>Confusion matrix</h2><p>rows: true class; columns: predicted class</p>" + _rows(
            ["", *map(str, matrix["labels"])],
            [[str(label), *counts] for label, counts in zip(matrix["labels"], matrix["matrix"], strict=True)],
            "confusion"))
    if "calibration" in diagnostics:
        curve = diagnostics["calibration"]
        parts.append(f"<h2>Calibration</h2><p>Brier score {fmt(curve['brier'])}</p>" + _rows(
            ["mean predicted", "fraction positive", "rows"],
            [list(r) for r in zip(curve["mean_predicted"], curve["fraction_positive"], curve["rows"], strict=True)],
            "calibration"))
    if "residuals" in diagnostics and diagnostics["residuals"].get("rows"):
        residuals = diagnostics["residuals"]
        parts.append("<h2>Residuals (true - predicted)</h2>" + _rows(
            ["mean", "std", *residuals["quantiles"]],
            [[residuals["mean"], residuals["std"], *residuals["quantiles"].values()]], "residuals")
            + _rows(["decile of prediction", "from", "to", "rows", "mean residual"],
                    [[d["decile"], d["prediction_from"], d["prediction_to"], d["rows"], d["mean_residual"]]
                     for d in residuals["by_decile"]], "deciles"))
    return "".join(parts)


def _importance_tables(explanations: dict[str, Any]) -> str:
    parts = []
    if "permutation" in explanations:
        found = explanations["permutation"]
        parts.append(f"<h2>Permutation importance</h2><p>drop in {html.escape(found['metric'])} when a feature is "
                     f"shuffled, on {found['rows']} test rows, {found['n_repeats']} repeats</p>"
                     + _rows(["rank", "feature", "mean", "std"],
                             [[r["rank"], r["feature"], r["mean"], r["std"]] for r in found["features"]], "importance"))
    if "contributions" in explanations:
        found = explanations["contributions"]
        parts.append(f"<h2>Mean absolute contribution (TreeSHAP)</h2><p>{html.escape(found['units'])}, on "
                     f"{found['rows']} test rows</p>"
                     + _rows(["rank", "feature", "mean |contribution|"],
                             [[r["rank"], r["feature"], r["mean_abs"]] for r in found["features"]], "contributions"))
    return "".join(parts)
