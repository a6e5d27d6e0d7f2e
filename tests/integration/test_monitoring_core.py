"""Monitoring core: labels joined to committed outputs, metrics against sklearn, CBPE against realized,
the degradation gate. Outputs are written as batch inference commits them: parquet parts and a manifest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.data import write_table
from airflow_mlops.errors import ConfigError, IntegrityError
from airflow_mlops.monitoring import (
    ScoredBatch,
    degradation_gate,
    estimate_performance,
    realized_performance,
)
from airflow_mlops.storage import LocalArtifactStore, S3ArtifactStore

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def config(task: str = "binary_classification", **monitoring: object):
    return parse_pipeline_config({
        "pipeline": "churn", "data": {"train": "t.parquet", "target": "label", "ids": ["customer"]},
        "model": {"flavor": "sklearn", "task": task},
        "monitoring": {"labels": "labels/", "min_labels": 50, **monitoring},
    })


@pytest.fixture
def store(tmp_path):
    return LocalArtifactStore(tmp_path / "root")


def commit(store, frame: pd.DataFrame, run_id: str, version: int = 1, committed_at: datetime = T0,
           parts: int = 2) -> ScoredBatch:
    """Parts and a manifest in the format commit_batch writes (the manifest last)."""
    prefix = f"predictions/{run_id}"
    written = []
    bounds = np.linspace(0, len(frame), parts + 1).astype(int)
    for index, (start, stop) in enumerate(zip(bounds, bounds[1:], strict=False)):
        piece = frame.iloc[start:stop]
        ref = write_table(piece.assign(model_name="churn", model_version=version, run_id=run_id),
                          f"{prefix}/part-{index:05d}.parquet", store)
        written.append({"uri": ref.uri, "rows": len(piece), "sha256": ref.sha256, "size": ref.size})
    manifest = store.write_json(f"{prefix}/_manifest.json", {
        "format": 1, "pipeline": "churn", "model": {"name": "churn", "version": version}, "run_id": run_id,
        "total_rows": len(frame), "parts": written})
    return ScoredBatch(run_id=run_id, version=version, manifest_uri=manifest.uri, committed_at=committed_at)


def binary_world(rows: int, seed: int, shift: float = 0.0, flip: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A calibrated model: labels are drawn from the probabilities it predicts (flip: the world changed)."""
    rng = np.random.default_rng(seed)
    score = rng.normal(loc=shift, size=rows)
    p = 1 / (1 + np.exp(-2 * score))
    y = (rng.random(rows) < p).astype(int)
    if flip:
        y = 1 - y
    ids = np.arange(rows) + seed * 1_000_000
    predictions = pd.DataFrame({"customer": ids, "prediction": (p > 0.5).astype(int), "proba_0": 1 - p, "proba_1": p,
                                "segment": rng.choice(["a", "b", "c"], rows)})
    labels = pd.DataFrame({"customer": ids, "label": y})
    return predictions, labels


def reference_file(store, seed: int = 99, rows: int = 5000) -> str:
    predictions, labels = binary_world(rows, seed)
    frame = predictions.drop(columns=["customer"]).assign(label=labels["label"].to_numpy())
    return write_table(frame, "models/v1/test_predictions.parquet", store).uri


def test_binary_metrics_match_sklearn_on_the_joined_rows(store):
    predictions, labels = binary_world(4000, seed=1)
    batch = commit(store, predictions, "run1")
    write_table(labels.sample(frac=0.7, random_state=1), "labels/part-0.parquet", store)
    cfg = config(metrics=["accuracy", "balanced_accuracy", "f1", "precision", "recall", "roc_auc", "pr_auc",
                          "log_loss", "brier"])
    [result] = realized_performance(cfg, [batch], "labels/", store)
    joined = predictions.merge(labels.sample(frac=0.7, random_state=1), on="customer")
    y, pred, p = joined["label"], joined["prediction"], joined["proba_1"]
    expected = {
        "accuracy": sk.accuracy_score(y, pred), "balanced_accuracy": sk.balanced_accuracy_score(y, pred),
        "f1": sk.f1_score(y, pred), "precision": sk.precision_score(y, pred), "recall": sk.recall_score(y, pred),
        "roc_auc": sk.roc_auc_score(y, p), "pr_auc": sk.average_precision_score(y, p),
        "log_loss": sk.log_loss(y, np.column_stack([1 - p, p])), "brier": sk.brier_score_loss(y, p),
    }
    for metric, value in expected.items():
        assert result.metrics[metric] == pytest.approx(value, abs=1e-4 if metric in ("roc_auc", "pr_auc") else 1e-9), metric
    assert (result.rows, result.labelled_rows) == (4000, 2800)
    assert result.coverage == pytest.approx(0.7)
    assert result.scoring_run_ids == ["run1"] and result.version == 1
    assert len(result.labels_fingerprint) == 64


def test_multiclass_with_string_labels_matches_sklearn(store):
    rng = np.random.default_rng(3)
    rows = 3000
    raw = rng.dirichlet([2, 2, 2], size=rows)
    classes = ["bird", "cat", "dog"]
    y = np.array([rng.choice(classes, p=row) for row in raw])
    frame = pd.DataFrame({"customer": [f"c{i}" for i in range(rows)],
                          "prediction": np.array(classes)[raw.argmax(axis=1)],
                          **{f"proba_{c}": raw[:, i] for i, c in enumerate(classes)}})
    batch = commit(store, frame, "run1")
    write_table(pd.DataFrame({"customer": frame["customer"], "label": y}), "labels/l.parquet", store)
    cfg = config("multiclass_classification", metrics=["accuracy", "f1", "balanced_accuracy", "roc_auc", "log_loss"])
    [result] = realized_performance(cfg, [batch], "labels/", store)
    assert result.metrics["accuracy"] == pytest.approx(sk.accuracy_score(y, frame["prediction"]), abs=1e-12)
    assert result.metrics["f1"] == pytest.approx(sk.f1_score(y, frame["prediction"], average="macro"), abs=1e-12)
    assert result.metrics["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, frame["prediction"]), abs=1e-12)
    assert result.metrics["roc_auc"] == pytest.approx(sk.roc_auc_score(y, raw, multi_class="ovr", labels=classes), abs=1e-4)
    assert result.metrics["log_loss"] == pytest.approx(sk.log_loss(y, raw, labels=classes), abs=1e-9)


def test_regression_metrics_match_sklearn(store):
    rng = np.random.default_rng(4)
    truth = rng.normal(10, 3, size=2000)
    predicted = truth + rng.normal(0, 1, size=2000)
    batch = commit(store, pd.DataFrame({"customer": np.arange(2000), "prediction": predicted}), "run1")
    write_table(pd.DataFrame({"customer": np.arange(2000), "label": truth}), "labels/l.parquet", store)
    [result] = realized_performance(config("regression", metrics=["rmse", "mae", "r2", "mape"]), [batch], "labels/", store)
    assert result.metrics["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(truth, predicted)), rel=1e-9)
    assert result.metrics["mae"] == pytest.approx(sk.mean_absolute_error(truth, predicted), rel=1e-9)
    assert result.metrics["r2"] == pytest.approx(sk.r2_score(truth, predicted), rel=1e-9)
    assert result.metrics["mape"] == pytest.approx(sk.mean_absolute_percentage_error(truth, predicted), rel=1e-9)


def test_duplicate_missing_and_unknown_ids_are_left_out_and_named(store):
    frame = pd.DataFrame({"customer": [1, 2, 3, 4], "prediction": [1, 0, 1, 0], "proba_0": [.2, .8, .3, .9],
                          "proba_1": [.8, .2, .7, .1]})
    batch = commit(store, frame, "run1", parts=1)
    labels = pd.DataFrame({"customer": [1, 1, 2, 3, None, 99], "label": [0, 1, 0, None, 1, 1]})
    write_table(labels, "labels/l.parquet", store)
    [result] = realized_performance(config(metrics=["accuracy"], min_labels=1), [batch], "labels/", store)
    # id 1: the last label in file order (1) counts; id 3's label is missing; id 99 was never scored
    assert result.labelled_rows == 2 and result.metrics["accuracy"] == 1.0
    notes = " | ".join(result.notes)
    assert "2 labels have a missing id or value" in notes
    assert "1 ids have more than one label; the last in file order counts" in notes
    assert "1 labels name ids that were never scored" in notes


def test_an_id_scored_twice_matches_the_latest_prediction_or_the_one_before_its_event(store):
    first = pd.DataFrame({"customer": [1, 2], "prediction": [0, 0], "proba_0": [.9, .9], "proba_1": [.1, .1]})
    second = pd.DataFrame({"customer": [1], "prediction": [1], "proba_0": [.1], "proba_1": [.9]})
    batches = [commit(store, first, "monday", version=1, committed_at=T0, parts=1),
               commit(store, second, "tuesday", version=2, committed_at=T0 + timedelta(days=1), parts=1)]
    write_table(pd.DataFrame({"customer": [1, 2], "label": [1, 0],
                              "happened": [T0 + timedelta(hours=12), T0 + timedelta(hours=30)]}), "labels/l.parquet", store)
    latest = {r.version: r for r in realized_performance(config(metrics=["accuracy"], min_labels=1), batches, "labels/", store)}
    assert latest[2].labelled_rows == 1 and latest[2].metrics["accuracy"] == 1.0  # customer 1: tuesday's prediction
    assert latest[1].labelled_rows == 1 and latest[1].rows == 1  # customer 2 only; customer 1 was re-scored
    assert any("1 ids were scored more than once" in n for n in latest[1].notes)
    timed = {r.version: r for r in realized_performance(config(metrics=["accuracy"], min_labels=1, event_time="happened"),
                                                        batches, "labels/", store)}
    # customer 1's outcome happened on Monday noon, before Tuesday's prediction: Monday's (wrong) prediction counts
    assert timed[1].labelled_rows == 2 and timed[1].metrics["accuracy"] == 0.5
    assert timed[2].labelled_rows == 0 and timed[1].period_start == T0 + timedelta(hours=12)


def test_slices_report_each_value_and_numeric_quartiles(store):
    predictions, labels = binary_world(4000, seed=5)
    predictions["age"] = np.random.default_rng(5).integers(18, 90, len(predictions))
    batch = commit(store, predictions, "run1")
    write_table(labels, "labels/l.parquet", store)
    [result] = realized_performance(config(metrics=["accuracy"], slices=["segment", "age"]), [batch], "labels/", store)
    joined = predictions.merge(labels, on="customer")
    for segment, part in joined.groupby("segment"):
        cell = result.slice_metrics[f"segment={segment}"]
        assert cell["rows"] == len(part)
        assert cell["accuracy"] == pytest.approx(sk.accuracy_score(part["label"], part["prediction"]))
    quartiles = [k for k in result.slice_metrics if k.startswith("age in [")]
    assert len(quartiles) == 4 and sum(result.slice_metrics[k]["rows"] for k in quartiles) == 4000


def test_estimated_performance_agrees_with_realized_inside_the_band(store):
    reference = reference_file(store)
    cfg = config(metrics=["accuracy", "roc_auc", "f1"])
    inside = {metric: 0 for metric in cfg.monitoring.metrics}
    for period in range(8):
        predictions, labels = binary_world(3000, seed=10 + period, shift=0.4 * (period % 4))  # covariate shift
        batch = commit(store, predictions, f"period{period}")
        estimate = estimate_performance(cfg, batch.manifest_uri, reference, store)
        write_table(labels, f"labels{period}/l.parquet", store)
        [realized] = realized_performance(cfg, [batch], f"labels{period}/", store)
        assert estimate.estimated and estimate.rows == 3000
        for metric in inside:
            low, high = estimate.bands[metric]
            assert low <= estimate.metrics[metric] <= high
            inside[metric] += low <= realized.metrics[metric] <= high
    assert all(count >= 6 for count in inside.values()), inside


def test_regression_is_not_estimated_but_says_so(store):
    batch = commit(store, pd.DataFrame({"customer": [1, 2], "prediction": [1.0, 2.0]}), "run1", parts=1)
    estimate = estimate_performance(config("regression"), batch.manifest_uri, "unused.parquet", store)
    assert not estimate.estimated and estimate.rows == 2 and "regression" in estimate.notes[0]


def test_a_degraded_period_fails_the_gate_and_too_few_labels_give_no_verdict(store):
    cfg = config(metrics=["accuracy", "roc_auc"], thresholds={"accuracy": {"min": 0.6}}, max_drop={"amount": 0.05})
    reference = {"accuracy": 0.76, "roc_auc": 0.84}
    healthy, labels = binary_world(3000, seed=20)
    write_table(labels, "labels/l.parquet", store)
    [good] = realized_performance(cfg, [commit(store, healthy, "good")], "labels/", store)
    assert degradation_gate(cfg, good, reference_metrics=reference).passed
    changed, flipped = binary_world(3000, seed=21, flip=True)
    write_table(flipped, "flipped/l.parquet", store)
    [bad] = realized_performance(cfg, [commit(store, changed, "bad")], "flipped/", store)
    gate = degradation_gate(cfg, bad, reference_metrics=reference)
    assert not gate.passed and gate.metrics["verdict"] == "degraded" and gate.policy == "warn"
    assert any(f.startswith("accuracy is 0.2") and "below the threshold 0.6" in f for f in gate.failures)
    assert any(f.startswith("roc_auc dropped from 0.84 (test set) to 0.1") for f in gate.failures)
    write_table(flipped.head(10), "few/l.parquet", store)
    [few] = realized_performance(cfg, [commit(store, changed, "few")], "few/", store)
    quiet = degradation_gate(cfg, few, reference_metrics=reference)
    assert quiet.passed and quiet.metrics["verdict"] == "none"
    assert quiet.summary == "no verdict: 10 labelled predictions of v1, fewer than monitoring.min_labels (50)"


def test_a_changed_part_is_refused_and_ids_are_required(store):
    predictions, labels = binary_world(200, seed=30)
    batch = commit(store, predictions, "run1", parts=1)
    write_table(labels, "labels/l.parquet", store)
    part = store.read_json(batch.manifest_uri)["parts"][0]["uri"]
    write_table(predictions.head(100), part, store)
    with pytest.raises(IntegrityError):
        realized_performance(config(), [batch], "labels/", store)
    no_ids = parse_pipeline_config({"pipeline": "churn", "data": {"train": "t.parquet", "target": "label"},
                                    "model": {"flavor": "sklearn", "task": "binary_classification"},
                                    "monitoring": {"labels": "labels/"}})
    with pytest.raises(ConfigError, match="data.ids, which is empty"):
        realized_performance(no_ids, [batch], "labels/", store)


@pytest.mark.s3
def test_realized_performance_reads_outputs_and_labels_on_s3(s3_bucket, s3_client):
    store = S3ArtifactStore(f"s3://{s3_bucket}/root", client=s3_client)
    predictions, labels = binary_world(1000, seed=40)
    batch = commit(store, predictions, "run1")
    write_table(labels, "labels/l.csv", store)
    [result] = realized_performance(config(metrics=["accuracy"]), [batch], "labels/", store)
    assert result.labelled_rows == 1000
    assert result.metrics["accuracy"] == pytest.approx(sk.accuracy_score(labels["label"], predictions["prediction"]))


def test_on_real_data_the_estimate_brackets_realized_accuracy_on_held_out_periods(store):
    """scikit-learn's breast cancer data: a model trained on one part, calibrated on its test part, then
    four held-out periods scored; the estimate's band holds the realized value in most of them."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, target = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(7).permutation(len(target))
    train, test, held_out = order[:200], order[200:369], order[369:]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500)).fit(features[train], target[train])

    def scored(rows: np.ndarray) -> pd.DataFrame:
        proba = model.predict_proba(features[rows])
        return pd.DataFrame({"customer": rows, "prediction": proba.argmax(axis=1), "proba_0": proba[:, 0],
                             "proba_1": proba[:, 1]})

    reference = scored(test).drop(columns=["customer"]).assign(label=target[test])
    reference_uri = write_table(reference, "models/v1/test_predictions.parquet", store).uri
    cfg = config(metrics=["accuracy", "roc_auc"], min_labels=10)
    inside = 0
    for period, rows in enumerate(np.array_split(held_out, 4)):
        batch = commit(store, scored(rows), f"period{period}", parts=1)
        estimate = estimate_performance(cfg, batch.manifest_uri, reference_uri, store)
        write_table(pd.DataFrame({"customer": rows, "label": target[rows]}), f"real{period}/l.parquet", store)
        [realized] = realized_performance(cfg, [batch], f"real{period}/", store)
        low, high = estimate.bands["accuracy"]
        inside += low <= realized.metrics["accuracy"] <= high
        assert abs(estimate.metrics["accuracy"] - realized.metrics["accuracy"]) < 0.15
    assert inside >= 3
