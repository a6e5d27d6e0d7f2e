"""Every flavor x task on data bundled with scikit-learn: train, save, load, score, reproduce."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.errors import DataError, IntegrityError, TrainingError
from airflow_mlops.examples import example_frames
from airflow_mlops.storage import LocalArtifactStore
from airflow_mlops.training import load_model, train_model

TASKS = {
    "binary_classification": ("breast_cancer", "target"),
    "multiclass_classification": ("wine", "cultivar"),
    "regression": ("diabetes", "progression"),
}
FLAVOR_PARAMS = {
    "sklearn": {},
    "xgboost": {"n_estimators": 30, "max_depth": 3},
    "torch": {"epochs": 60, "batch_size": 32, "hidden_sizes": [16], "learning_rate": 0.01, "patience": 60},
}


def config_for(flavor: str, task: str, **model):
    example, target = TASKS[task]
    return parse_pipeline_config({
        "pipeline": example,
        "data": {"train": f"data/{example}/train.parquet", "target": target},
        "model": {"flavor": flavor, "task": task, "params": FLAVOR_PARAMS[flavor], "seed": 3, **model},
    })


def split(task: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    frame = example_frames(TASKS[task][0])["train"]
    n = len(frame)
    return frame.iloc[: n * 6 // 10], frame.iloc[n * 6 // 10 : n * 8 // 10], frame.iloc[n * 8 // 10 :]


@pytest.fixture
def store(tmp_path):
    return LocalArtifactStore(tmp_path / "store")


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("flavor", list(FLAVOR_PARAMS))
def test_every_flavor_and_task_trains_saves_loads_and_scores(flavor, task, store):
    config = config_for(flavor, task)
    train, validation, test = split(task)
    trained = train_model(config, train, validation, store, output_prefix=f"m/{flavor}/{task}")
    model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
    assert model.flavor == flavor and model.task == task
    assert trained.metadata["features"]["features"] == [c for c in train.columns if c != config.data.target]
    assert trained.metadata["library_versions"]["python"]
    predictions = model.predict(test)
    assert len(predictions) == len(test)
    if task == "regression":
        assert np.corrcoef(predictions, test[config.data.target])[0, 1] > 0.3
        with pytest.raises(TrainingError, match="only defined for classifiers"):
            model.predict_proba(test)
    else:
        proba = model.predict_proba(test)
        assert proba.shape == (len(test), len(model.classes))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
        assert set(predictions) <= set(model.classes)
        assert (predictions == test[config.data.target].to_numpy()).mean() > 0.8
    if task == "multiclass_classification":
        assert model.classes == ["class_0", "class_1", "class_2"], "string labels come back as they were"


@pytest.mark.parametrize("flavor", list(FLAVOR_PARAMS))
def test_same_config_and_data_give_identical_predictions(flavor, store):
    config = config_for(flavor, "binary_classification")
    train, validation, test = split("binary_classification")
    first = train_model(config, train, validation, store, output_prefix="a")
    second = train_model(config, train, validation, store, output_prefix="b")
    one = load_model(first.model_uri, store, expected_sha256=first.artifact.sha256)
    two = load_model(second.model_uri, store, expected_sha256=second.artifact.sha256)
    np.testing.assert_array_equal(one.predict_proba(test), two.predict_proba(test))


@pytest.mark.parametrize("target_file", ["model", "metadata"])
@pytest.mark.parametrize("flavor", ["sklearn", "xgboost", "torch"])
def test_a_tampered_bundle_raises_integrity_error_and_is_never_deserialized(flavor, target_file, store, monkeypatch):
    from airflow_mlops.training import base

    config = config_for(flavor, "binary_classification")
    train, validation, _ = split("binary_classification")
    trained = train_model(config, train, validation, store, output_prefix="m")
    name = trained.metadata["model_file"] if target_file == "model" else "metadata.json"
    path = Path(store.uri(f"m/{name}"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    deserialized = []
    original = base.trainer_class

    def spy(flavor_name):
        cls = original(flavor_name)
        monkeypatch.setattr(cls, "load", classmethod(lambda c, *a: deserialized.append(a) or None))
        return cls

    monkeypatch.setattr(base, "trainer_class", spy)
    with pytest.raises(IntegrityError):
        load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
    assert deserialized == []


def test_torch_resumes_from_its_checkpoint_after_a_crash(store, monkeypatch):
    from airflow_mlops.training import torch_flavor

    config = config_for("torch", "regression", params={"epochs": 6, "batch_size": 64, "hidden_sizes": [8], "patience": 100})
    train, validation, test = split("regression")
    uninterrupted = train_model(config, train, validation, store, output_prefix="full")

    calls = {"epochs": 0}
    original = torch_flavor.TorchTrainer._checkpoint

    def crash_after_three(self, context, *args):
        original(self, context, *args)
        calls["epochs"] += 1
        if calls["epochs"] == 3:
            raise RuntimeError("worker killed")

    monkeypatch.setattr(torch_flavor.TorchTrainer, "_checkpoint", crash_after_three)
    with pytest.raises(RuntimeError, match="worker killed"):
        train_model(config, train, validation, store, output_prefix="retry", checkpoint_prefix="ckpt")
    monkeypatch.setattr(torch_flavor.TorchTrainer, "_checkpoint", original)
    epochs_seen = []
    original_resume = torch_flavor.TorchTrainer._resume

    def watch(self, *args):
        state = original_resume(self, *args)
        epochs_seen.append(state["epoch"])
        return state

    monkeypatch.setattr(torch_flavor.TorchTrainer, "_resume", watch)
    resumed = train_model(config, train, validation, store, output_prefix="retry", checkpoint_prefix="ckpt")
    assert epochs_seen == [3], "the retry starts after the last checkpointed epoch"
    one = load_model(uninterrupted.model_uri, store, expected_sha256=uninterrupted.artifact.sha256)
    two = load_model(resumed.model_uri, store, expected_sha256=resumed.artifact.sha256)
    np.testing.assert_allclose(one.predict(test), two.predict(test), rtol=1e-6)


def test_bad_input_errors_name_the_problem(store):
    train, validation, test = split("binary_classification")
    config = config_for("xgboost", "binary_classification")
    trained = train_model(config, train, validation, store, output_prefix="m")
    model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
    with pytest.raises(DataError, match="missing feature column 'mean radius'"):
        model.predict(test.drop(columns=["mean radius"]))
    with pytest.raises(DataError, match="'mean texture' is object, expected a number"):
        model.predict(test.assign(**{"mean texture": "high"}))
    one_class = train.assign(target=1)
    with pytest.raises(DataError, match="has only one class"):
        train_model(config, one_class, None, store, output_prefix="x")
    bad = config_for("sklearn", "binary_classification", estimator="sklearn.ensemble.NoSuchForest")
    with pytest.raises(TrainingError, match="'sklearn.ensemble.NoSuchForest' does not import"):
        train_model(bad, train, validation, store, output_prefix="y")
    regressor = config_for("sklearn", "binary_classification", estimator="sklearn.linear_model.Ridge")
    with pytest.raises(TrainingError, match="is not a classifier"):
        train_model(regressor, train, validation, store, output_prefix="z")
    dates = train.assign(seen=pd.Timestamp("2024-01-01"))
    with pytest.raises(DataError, match="'seen' is a datetime column"):
        train_model(config, dates, None, store, output_prefix="w")


def test_categorical_features_are_encoded_the_same_way_at_scoring(store):
    rng = np.random.default_rng(0)
    n = 600
    color = rng.choice(["red", "green", "blue"], size=n)
    frame = pd.DataFrame({"x": rng.normal(size=n), "color": color, "y": (color == "red").astype(int)})
    for flavor in ("sklearn", "xgboost", "torch"):
        config = parse_pipeline_config({
            "pipeline": "colors", "data": {"train": "c.parquet", "target": "y"},
            "model": {"flavor": flavor, "task": "binary_classification", "params": FLAVOR_PARAMS[flavor] | ({"epochs": 40} if flavor == "torch" else {})},
        })
        trained = train_model(config, frame.iloc[:400], frame.iloc[400:500], store, output_prefix=f"c/{flavor}")
        model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
        assert trained.metadata["features"]["categories"]["color"] == ["blue", "green", "red"]
        scored = frame.iloc[500:].reset_index(drop=True)
        assert (model.predict(scored) == scored["y"].to_numpy()).mean() > 0.95, flavor
        unseen = scored.assign(color="purple")
        assert len(model.predict(unseen)) == len(unseen), "an unseen category is scored, not a crash"


def test_model_round_trips_through_s3(s3_client, s3_bucket):
    from airflow_mlops.storage import S3ArtifactStore

    store = S3ArtifactStore(f"s3://{s3_bucket}/models", client=s3_client)
    config = config_for("xgboost", "binary_classification")
    train, validation, test = split("binary_classification")
    trained = train_model(config, train, validation, store, output_prefix="m")
    assert trained.model_uri.startswith(f"s3://{s3_bucket}/models/m/")
    model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
    assert len(model.predict(test)) == len(test)


@pytest.mark.parametrize("flavor", ["sklearn", "xgboost", "torch"])
def test_training_leaves_the_callers_frames_untouched(flavor, store):
    train, validation, _ = split("binary_classification")
    train = train.astype({c: "float32" for c in train.columns if c != "target" and train[c].dtype.kind == "f"})
    before_train, before_validation = train.copy(), validation.copy()
    trained = train_model(config_for(flavor, "binary_classification"), train, validation, store, output_prefix="m")
    pd.testing.assert_frame_equal(train, before_train)
    pd.testing.assert_frame_equal(validation, before_validation)
    # What the model learnt from the frame is what it applies to the same frame at scoring time.
    from sklearn.metrics import roc_auc_score

    model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
    scored = roc_auc_score(train["target"], model.predict_proba(train)[:, 1])
    assert trained.train_metrics["roc_auc"] == pytest.approx(scored, abs=1e-6)


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("flavor", list(FLAVOR_PARAMS))
def test_the_batch_inference_column_path_predicts_what_the_frame_path_does(flavor, task, store, monkeypatch):
    from airflow_mlops.training import xgboost_flavor

    monkeypatch.setattr(xgboost_flavor, "PIECE_ROWS", 16)  # many pieces per call, the last one short
    first, second = [c for c in split(task)[0].columns if c != TASKS[task][1]][:2]
    # An integer feature: both paths must convert it the same way.
    train, validation, test = (f.assign(**{first: (f[first] * 1000).round().astype("int64")}) for f in split(task))
    trained = train_model(config_for(flavor, task), train, validation, store, output_prefix="m")
    model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
    if flavor == "xgboost":
        test.loc[test.index[::7], second] = np.nan  # missing values take XGBoost's default branch
    predictions, proba = model.predict_columns([test[c].to_numpy() for c in model.feature_names])
    if task == "regression":
        assert proba is None
        np.testing.assert_allclose(predictions, model.predict(test), rtol=1e-5)
    else:
        np.testing.assert_array_equal(predictions, model.predict(test))
        np.testing.assert_allclose(proba, model.predict_proba(test), rtol=1e-5, atol=1e-7)
    empty_predictions, _ = model.predict_columns([test[c].to_numpy()[:0] for c in model.feature_names])
    assert len(empty_predictions) == 0


def test_xgboost_pieces_leave_the_frame_path_all_cores_and_work_after_a_fork(store):
    import json
    import multiprocessing

    from airflow_mlops.training.threads import machine_threads

    train, validation, test = split("binary_classification")
    trained = train_model(config_for("xgboost", "binary_classification"), train, validation, store, output_prefix="m")
    model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
    columns = [test[c].to_numpy() for c in model.feature_names]
    expected, _ = model.predict_columns(columns)  # starts this process's piece threads
    config = json.loads(model.trainer.booster.save_config())
    assert config["learner"]["generic_param"]["nthread"] == str(machine_threads())
    # Airflow forks task processes: a child must not wait on the parent's threads, which it does not have.
    results = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(
        target=lambda: results.put(model.predict_columns(columns)[0].tolist()))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on the parent's prediction threads")
    assert results.get(timeout=5) == expected.tolist()
