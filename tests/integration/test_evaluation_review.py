"""Evaluation a reviewer can sign: slice gates, fairness gates, diagnostics and explanations (issue 19).

A synthetic table with a planted group disparity (group B's labels are noisy and its base rate is
lower) and one planted informative feature (`signal`), plus scikit-learn's bundled wine and diabetes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.evaluation import evaluate_candidate
from airflow_mlops.evaluation.slices import groups
from airflow_mlops.examples import example_frames
from airflow_mlops.storage import LocalArtifactStore
from airflow_mlops.training import load_model, train_model


def planted(rows: int = 4000, seed: int = 0) -> pd.DataFrame:
    """`signal` decides the label; `sex` (not a feature) marks a group whose labels are noisier and rarer."""
    rng = np.random.default_rng(seed)
    female = rng.random(rows) < 0.35
    signal = rng.normal(size=rows) - 0.9 * female
    label = (signal + 0.3 * rng.normal(size=rows)) > 0
    flipped = female & (rng.random(rows) < 0.22)
    return pd.DataFrame({
        "signal": signal, **{f"noise_{i}": rng.normal(size=rows) for i in range(4)},
        "age": rng.integers(18, 90, size=rows),
        "sex": np.where(female, "female", "male"),
        "label": np.where(label ^ flipped, "yes", "no"),
    })


def config(evaluation: dict | None = None, *, flavor: str = "xgboost", task: str = "binary_classification",
           target: str = "label", features: str | list = "all"):
    params = {"n_estimators": 60, "max_depth": 3} if flavor == "xgboost" else {}
    return parse_pipeline_config({
        "pipeline": "review",
        "data": {"train": "t.parquet", "target": target, "features": features},
        "model": {"flavor": flavor, "task": task, "params": params},
        "evaluation": {"metrics": ["roc_auc"] if task == "binary_classification" else None, **(evaluation or {})},
    })


FAIRNESS = {"sensitive": ["sex"], "max": {"demographic_parity_difference": 0.1},
            "min": {"demographic_parity_ratio": 0.8}}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path_factory.mktemp("review"))


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = planted()
    return frame.iloc[:2500].reset_index(drop=True), frame.iloc[2500:].reset_index(drop=True)


def _fit(store, cfg, train, prefix):
    trained = train_model(cfg, train, None, store, output_prefix=prefix)
    return load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)


@pytest.fixture(scope="module")
def model(store, data):
    """Trained with the fairness section: the sensitive column stays out of the features."""
    return _fit(store, config({"fairness": FAIRNESS}), data[0], "xgb")


def test_the_sensitive_column_is_kept_in_the_data_but_not_used_by_the_model(model, data):
    assert "sex" not in model.feature_names and "signal" in model.feature_names
    listed = config({"fairness": {**FAIRNESS, "as_features": True}}, features=["signal", "sex"])
    assert listed.sensitive_columns() == []


def test_a_slice_gate_rejects_a_model_the_overall_gate_passes_naming_the_group(model, store, data):
    overall = {"thresholds": {"roc_auc": {"min": 0.85}}}
    passes = evaluate_candidate(config(overall), model, data[1], store, report_path="a/eval.html")
    assert passes.gate.passed, passes.gate.failures
    sliced = {**overall, "slices": [{"column": "sex", "thresholds": {"roc_auc": {"min": 0.85}},
                                     "max_gap": {"roc_auc": 0.05}}]}
    rejected = evaluate_candidate(config(sliced), model, data[1], store, report_path="a/eval.html")
    assert not rejected.gate.passed
    assert len(rejected.gate.failures) == 2, rejected.gate.failures
    below, gap = rejected.gate.failures
    assert below.startswith("roc_auc on sex=female is ") and below.endswith(", below 0.85")
    assert gap.startswith("roc_auc on sex=female is ") and " below the overall " in gap
    assert gap.endswith(", more than the allowed gap 0.05")
    slices = rejected.record["slice_metrics"]
    assert slices["sex=female"]["failures"] == [below, gap] and "failures" not in slices["sex=male"]
    assert slices["sex=male"]["roc_auc"] > 0.85 > slices["sex=female"]["roc_auc"]
    report = store.read_bytes("a/eval.html").decode()
    assert "below the overall" in report and "FAIL" in report


def test_small_slices_are_reported_not_gated_and_numeric_columns_slice_by_bins(model, store, data):
    cfg = config({"slices": [{"column": "age", "bins": [0, 20, 50, 120], "min_size": 200,
                              "thresholds": {"roc_auc": {"min": 0.5}}},
                             {"column": "age", "bins": 4}]})
    result = evaluate_candidate(cfg, model, data[1], store, report_path="b/eval.html")
    slices = result.record["slice_metrics"]
    assert {"age in [0, 20)", "age in [20, 50)", "age in [50, 120]"} <= set(slices)
    small = slices["age in [0, 20)"]
    assert small["rows"] < 200 and "not scored" in small["note"] and "roc_auc" not in small
    assert result.gate.passed, result.gate.failures
    quartiles = [key for key in slices if key.startswith("age in [") and key not in
                 {"age in [0, 20)", "age in [20, 50)", "age in [50, 120]"}]
    assert len(quartiles) == 4 and sum(slices[k]["rows"] for k in quartiles) == len(data[1])


def test_bins_put_every_row_in_one_group():
    series = pd.Series([1.0, 5.0, 10.0, None, 50.0, -3.0], name="x")
    found = {g.key: g.positions.tolist() for g in groups(series, [0, 5, 10])}
    assert found == {"x in [0, 5)": [0], "x in [5, 10]": [1, 2], "x outside [0, 10]": [4, 5], "x missing": [3]}
    with pytest.raises(ValueError, match="not numeric"):
        groups(pd.Series(["a"], name="s"), 3)


def test_a_fairness_gate_rejects_a_model_the_overall_gate_passes_naming_the_group_and_gap(model, store, data):
    from fairlearn.metrics import (
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
    )

    overall = {"thresholds": {"roc_auc": {"min": 0.85}}}
    result = evaluate_candidate(config({**overall, "fairness": {**FAIRNESS, "metrics": ["equalized_odds_difference"]}}),
                                model, data[1], store, report_path="c/eval.html")
    assert not result.gate.passed
    assert not any(f.startswith("roc_auc") for f in result.gate.failures)
    difference, ratio = result.gate.failures
    assert difference.startswith("demographic_parity_difference on sex is ")
    assert "(selection rate female " in difference and ", male " in difference and difference.endswith("), above 0.1")
    assert ratio.startswith("demographic_parity_ratio on sex is ") and ratio.endswith("), below 0.8")
    found = result.record["fairness"]["sex"]
    predicted = model.predict(data[1]) == "yes"
    truth = data[1]["label"].to_numpy() == "yes"
    sex = data[1]["sex"].to_numpy()
    assert found["metrics"]["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(truth, predicted, sensitive_features=sex))
    assert found["metrics"]["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(truth, predicted, sensitive_features=sex))
    assert found["metrics"]["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(truth, predicted, sensitive_features=sex))
    female, male = found["groups"]["female"], found["groups"]["male"]
    assert female["selection_rate"] < male["selection_rate"] and female["rows"] + male["rows"] == len(data[1])
    assert found["positive_class"] == "yes"
    stored = store.read_bytes(result.record["predictions_uri"].removeprefix(str(store.root) + "/"))
    assert b"sex" in stored  # the sensitive column travels with the stored test predictions


def test_a_missing_sensitive_column_fails_a_gated_fairness_check(model, store, data):
    result = evaluate_candidate(config({"fairness": FAIRNESS}), model, data[1].drop(columns="sex"), store,
                                report_path="d/eval.html")
    assert result.gate.failures[0] == ("demographic_parity_difference on sex cannot be computed: the sensitive "
                                       "column 'sex' is not in the test set")


def test_importance_ranks_the_planted_feature_first_for_xgboost_and_sklearn(model, store, data):
    result = evaluate_candidate(config(), model, data[1], store, report_path="e/eval.html")
    explanations = result.record["explanations"]
    permutation, contributions = explanations["permutation"], explanations["contributions"]
    assert permutation["features"][0]["feature"] == "signal" and permutation["features"][0]["rank"] == 1
    assert permutation["metric"] == "roc_auc" and permutation["rows"] == len(data[1])
    assert contributions["features"][0]["feature"] == "signal"
    assert contributions["features"][0]["mean_abs"] > 3 * contributions["features"][1]["mean_abs"]
    sklearn_model = _fit(store, config({"fairness": FAIRNESS}, flavor="sklearn"), data[0], "skl")
    cfg = config({"explanations": {"sample_rows": 500, "n_repeats": 3}})
    sampled = evaluate_candidate(cfg, sklearn_model, data[1], store, report_path="e/skl.html").record["explanations"]
    assert sampled["permutation"]["features"][0]["feature"] == "signal" and sampled["permutation"]["rows"] == 500
    assert "contributions" not in sampled  # only XGBoost has native contributions


def test_classifier_diagnostics_on_wine(store):
    frame = example_frames("wine")["train"]
    cfg = config({"explanations": {"enabled": False}}, task="multiclass_classification", target="cultivar")
    wine = _fit(store, cfg, frame.iloc[:100], "wine")
    test = frame.iloc[100:].reset_index(drop=True)
    diagnostics = evaluate_candidate(cfg, wine, test, store, report_path="f/eval.html").record["diagnostics"]
    assert [row["class"] for row in diagnostics["per_class"]] == ["class_0", "class_1", "class_2"]
    assert sum(row["support"] for row in diagnostics["per_class"]) == len(test)
    matrix = diagnostics["confusion_matrix"]
    assert matrix["labels"] == ["class_0", "class_1", "class_2"]
    assert np.asarray(matrix["matrix"]).sum() == len(test) and "calibration" not in diagnostics
    report = store.read_bytes("f/eval.html").decode()
    assert "<h2>Confusion matrix</h2>" in report and "<h2>Per class</h2>" in report


def test_binary_calibration_and_regression_residuals(model, store, data):
    calibration = evaluate_candidate(config(), model, data[1], store, report_path="g/eval.html").record["diagnostics"][
        "calibration"]
    assert sum(calibration["rows"]) == len(data[1]) and 0 <= calibration["brier"] < 0.25
    assert len(calibration["mean_predicted"]) == len(calibration["fraction_positive"]) == len(calibration["rows"])
    frame = example_frames("diabetes")["train"]
    cfg = config({"explanations": {"n_repeats": 2}}, task="regression", target="progression")
    regressor = _fit(store, cfg, frame.iloc[:250], "diabetes")
    test = frame.iloc[250:].reset_index(drop=True)
    record = evaluate_candidate(cfg, regressor, test, store, report_path="g/reg.html").record
    residuals = record["diagnostics"]["residuals"]
    expected = test["progression"].to_numpy() - regressor.predict(test)
    assert residuals["mean"] == pytest.approx(expected.mean()) and residuals["quantiles"]["p50"] == pytest.approx(
        np.median(expected))
    assert len(residuals["by_decile"]) == 10 and sum(d["rows"] for d in residuals["by_decile"]) == len(test)
    assert record["explanations"]["permutation"]["metric"] == "rmse"
