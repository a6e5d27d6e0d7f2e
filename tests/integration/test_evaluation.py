"""The evaluation gate: thresholds, baseline, overfitting guard and champion/challenger rules."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.evaluation import compute_metrics, evaluate_candidate, greater_is_better
from airflow_mlops.examples import example_frames
from airflow_mlops.storage import LocalArtifactStore
from airflow_mlops.training import load_model, train_model


def config(evaluation: dict | None = None, params: dict | None = None):
    return parse_pipeline_config({
        "pipeline": "breast_cancer",
        "data": {"train": "t.parquet", "target": "target"},
        "model": {"flavor": "xgboost", "task": "binary_classification", "params": params or {"n_estimators": 60, "max_depth": 3}},
        "evaluation": evaluation or {},
    })


@pytest.fixture(scope="module")
def data():
    frame = example_frames("breast_cancer")["train"]
    return frame.iloc[:300], frame.iloc[300:380], frame.iloc[380:].reset_index(drop=True)


@pytest.fixture(scope="module")
def models(data, tmp_path_factory):
    store = LocalArtifactStore(tmp_path_factory.mktemp("models"))
    train, validation, _ = data
    good = train_model(config(), train, validation, store, output_prefix="good")
    weak = train_model(config(params={"n_estimators": 1, "max_depth": 1}), train.iloc[:40], None, store, output_prefix="weak")
    load = lambda t: load_model(t.model_uri, store, expected_sha256=t.artifact.sha256)  # noqa: E731
    return {"good": load(good), "weak": load(weak), "good_trained": good, "store": store}


def run(models, data, evaluation=None, candidate="good", champion=None, champion_version=None, **kwargs):
    return evaluate_candidate(
        config(evaluation), models[candidate], data[2], models["store"], report_path="r/eval.html",
        champion=models[champion] if champion else None, champion_version=champion_version, **kwargs,
    )


def test_a_worse_challenger_is_rejected_and_a_better_one_passes(models, data):
    rejected = run(models, data, candidate="weak", champion="good", champion_version=3)
    assert not rejected.gate.passed
    assert any("does not improve on champion v3" in f for f in rejected.gate.failures)
    accepted = run(models, data, candidate="good", champion="weak", champion_version=2)
    assert accepted.gate.passed, accepted.gate.failures
    assert accepted.record["compared_to_version"] == 2
    assert accepted.gate.metrics["champion"]["roc_auc"] < accepted.gate.metrics["candidate"]["roc_auc"]


def test_first_run_follows_on_missing(models, data):
    passes = run(models, data, {"champion": {"on_missing": "pass"}})
    assert passes.gate.passed
    fails = run(models, data, {"champion": {"on_missing": "fail"}})
    assert not fails.gate.passed
    assert fails.gate.failures == ["no champion yet: the comparison fails (champion.on_missing: fail)"]


def test_thresholds_absent_and_present(models, data):
    free = run(models, data, {"thresholds": {}})
    assert free.gate.passed
    assert "no thresholds configured" in models["store"].read_bytes("r/eval.html").decode()
    strict = run(models, data, {"thresholds": {"roc_auc": {"min": 0.9999}, "log_loss": {"max": 0.0001}}})
    assert "roc_auc" in strict.gate.failures[0] and "is below the minimum 0.9999" in strict.gate.failures[0]
    assert "is above the maximum 0.0001" in strict.gate.failures[1]


def test_relative_improvement_is_a_share_of_the_champion(models, data):
    same = run(models, data, {"champion": {"min_improvement": 0.0, "on_tie": "promote"}}, champion="good", champion_version=1)
    assert same.gate.passed, "with on_tie: promote, equal to the champion passes a zero minimum improvement"
    demanding = run(models, data, {"champion": {"min_improvement": 0.05, "relative": True}}, champion="good", champion_version=1)
    assert not demanding.gate.passed
    assert "by at least 5.0% relative" in demanding.gate.failures[0]


def test_a_tie_with_the_champion_does_not_promote_by_default(models, data):
    """Weekly retraining on unchanged data gives the same model: it must not replace the champion."""
    tie = run(models, data, champion="good", champion_version=1)
    assert not tie.gate.passed
    assert [f for f in tie.gate.failures if "champion" in f] == [
        f"roc_auc {tie.gate.metrics['candidate']['roc_auc']:.4g} ties champion v1 "
        f"({tie.gate.metrics['champion']['roc_auc']:.4g}): a challenger must beat it (champion.on_tie: reject)"
    ]
    # A positive min_improvement still needs that much: a tie never meets it, whatever on_tie says.
    demanding = run(models, data, {"champion": {"min_improvement": 0.001, "on_tie": "promote"}},
                    champion="good", champion_version=1)
    assert any("does not improve on champion v1" in f for f in demanding.gate.failures)


def test_baseline_and_overfitting_guard(models, data):
    result = run(models, data, {"max_overfit_gap": 0.001},
                 train_metrics={"roc_auc": 1.0}, validation_metrics={"roc_auc": 0.95})
    assert any("train-validation gap of roc_auc is 0.05" in f for f in result.gate.failures)
    assert result.gate.metrics["baseline"]["roc_auc"] == pytest.approx(0.5)


def test_a_champion_that_cannot_be_scored_is_a_named_failure(models, data):
    broken = data[2].drop(columns=["mean radius"])
    tie_allowed = config({"champion": {"on_tie": "promote"}})
    result = evaluate_candidate(tie_allowed, models["good"], data[2], models["store"], report_path="r/x.html",
                                champion=models["good"], champion_version=4)
    assert result.gate.passed
    class Unscorable:
        task, classes = "binary_classification", [0, 1]

        def predict(self, frame):
            return models["good"].predict(broken)

        predict_proba = predict

    failed = evaluate_candidate(config(), models["good"], data[2], models["store"], report_path="r/y.html",
                                champion=Unscorable(), champion_version=4)
    assert failed.gate.failures == [
        "champion v4 cannot be scored on this test set: missing feature column 'mean radius'; "
        + "the model was trained on " + ", ".join(repr(c) for c in models["good"].feature_names)
    ]


def test_slices_are_reported_with_a_minimum_size(models, data):
    test = data[2].assign(size=np.where(data[2]["mean radius"] > 15, "large", "small"))
    result = evaluate_candidate(config({"slices": [{"column": "size", "min_size": 30}]}), models["good"], test,
                                models["store"], report_path="r/s.html")
    slices = result.record["slice_metrics"]
    assert set(slices) == {"size=large", "size=small"}
    small_or_large = [v for v in slices.values() if "roc_auc" in v]
    assert small_or_large and all(0 <= v["roc_auc"] <= 1 for v in small_or_large)
    report = models["store"].read_bytes("r/s.html").decode()
    section = report.split("<h2>Slices</h2>", 1)[1]
    assert section.startswith("<table class=slices>") and "{" not in section  # a table, not printed dicts
    assert "<td>size=large</td>" in section and "<th>roc_auc</th>" in section


def test_metrics_match_sklearn_and_know_their_direction():
    rng = np.random.default_rng(1)
    y = rng.choice(["no", "yes"], size=200)
    proba = np.clip(rng.random(200) * 0.5 + (y == "yes") * 0.4, 0, 1)
    predicted = np.where(proba > 0.5, "yes", "no")
    got = compute_metrics("binary_classification", ["roc_auc", "f1", "log_loss", "brier", "pr_auc"], y, predicted,
                          np.column_stack([1 - proba, proba]), ["no", "yes"])
    assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(y == "yes", proba))
    assert got["f1"] == pytest.approx(sk.f1_score(y, predicted, pos_label="yes"))
    assert got["brier"] == pytest.approx(sk.brier_score_loss(y == "yes", proba))
    regression = compute_metrics("regression", ["rmse", "mae", "r2"], np.array([1.0, 2, 3]), np.array([1.0, 2, 4]))
    assert regression["rmse"] == pytest.approx(np.sqrt(1 / 3))
    assert greater_is_better("roc_auc") and not greater_is_better("rmse") and not greater_is_better("log_loss")
    single_class = compute_metrics("binary_classification", ["roc_auc"], np.array([1, 1]), np.array([1, 1]),
                                   np.array([[0.1, 0.9], [0.2, 0.8]]), [0, 1])
    assert single_class["roc_auc"] is None, "undefined on one class: None, never NaN in JSON"


def test_a_custom_metric_that_does_not_import_is_a_config_error_naming_the_field():
    from types import SimpleNamespace

    from airflow_mlops.errors import ConfigError

    custom = {"profit": SimpleNamespace(path="no_such_package.profit", needs_proba=False)}
    with pytest.raises(ConfigError, match=r"evaluation.custom_metrics.profit 'no_such_package.profit' does not import"):
        compute_metrics("regression", ["profit"], [1.0, 2.0], [1.0, 2.0], None, None, custom)
