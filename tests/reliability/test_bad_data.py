"""Bad datasets fail with a named DataError that says what to do, and leave nothing in the store.

Each case goes through the shared layer (read_table, split_dataset, train_model, LoadedModel,
evaluate_candidate), for every flavor where the flavors used to differ.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.data import dataset_ref, read_table, split_dataset
from airflow_mlops.errors import DataError
from airflow_mlops.evaluation import evaluate_candidate
from airflow_mlops.storage import LocalArtifactStore
from airflow_mlops.training import load_model, train_model

FLAVORS = ["sklearn", "xgboost", "torch"]
TINY_PARAMS = {
    "sklearn": {"max_iter": 5},
    "xgboost": {"n_estimators": 5, "max_depth": 2},
    "torch": {"epochs": 2, "batch_size": 16, "hidden_sizes": [4]},
}
ROWS = 60


def config_for(flavor: str, task: str = "binary_classification", **data):
    return parse_pipeline_config({
        "pipeline": "bad_data",
        "data": {"train": "t.parquet", "target": "label", **data},
        "model": {"flavor": flavor, "task": task, "params": TINY_PARAMS[flavor], "seed": 1},
    })


def frame(rows: int = ROWS, task: str = "binary_classification") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=rows)
    label = x1 * 3 + rng.normal(size=rows) if task == "regression" else np.where(x1 > 0, "yes", "no")
    return pd.DataFrame({"x1": x1, "x2": rng.normal(size=rows), "color": rng.choice(["red", "blue"], size=rows), "label": label})


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under the store's root (hidden temp files included) with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


@pytest.fixture
def store(tmp_path):
    return LocalArtifactStore(tmp_path / "store")


@pytest.fixture
def unchanged(store):
    """Asserts, after the test, that the store holds exactly what it held before the failing call."""
    root = Path(store.uri(""))
    before = snapshot(root)
    yield
    assert snapshot(root) == before, "a failed step left files in the store"


def fails_to_train(store, config, train, validation=None, match: str = "") -> DataError:
    with pytest.raises(DataError, match=match) as raised:
        train_model(config, train, validation, store, output_prefix="m", checkpoint_prefix="ckpt")
    return raised.value


# ---------------------------------------------------------------------- reading


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_duplicate_column_names_are_refused_when_read_and_fingerprinted(store, file_format):
    root = Path(store.uri(""))
    root.mkdir(parents=True)
    if file_format == "csv":
        # pandas would read this header as x, x.1; Arrow keeps the names as written.
        (root / "dup.csv").write_text("x,color,x,label\n1,red,2,yes\n3,blue,4,no\n")
    else:
        pq.write_table(pa.table([[1, 3], ["red", "blue"], [2, 4], ["yes", "no"]], names=["x", "color", "x", "label"]), root / "dup.parquet")
    with pytest.raises(DataError, match=rf"dup\.{file_format} has duplicate column names: 'x' \(2 times\); rename or drop"):
        read_table(f"dup.{file_format}", store)
    with pytest.raises(DataError, match=rf"dup\.{file_format} has duplicate column names: 'x'"):
        dataset_ref(f"dup.{file_format}", store)


# ---------------------------------------------------------------------- training, every flavor


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_frame_with_duplicate_columns_is_refused_before_training(store, unchanged, flavor):
    data = frame()
    duplicated = pd.concat([data, data[["x2"]]], axis=1)
    fails_to_train(store, config_for(flavor), duplicated, match=r"the training data has duplicate column names: 'x2' \(2 times\)")
    fails_to_train(store, config_for(flavor), data, duplicated, match="the validation data has duplicate column names: 'x2'")


@pytest.mark.parametrize("features", ["all", ["x1", "x2", "color"]])
@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_all_null_feature_is_named_with_how_to_leave_it_out(store, unchanged, flavor, features):
    data = frame().assign(x2=np.nan)
    error = fails_to_train(store, config_for(flavor, features=features), data,
                           match=r"feature 'x2' has no values \(missing in all 60 training rows\)")
    if features == "all":
        assert "set data.features to the list of columns to use, without 'x2'" in str(error)
    else:
        assert "remove 'x2' from data.features" in str(error)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_all_null_categorical_feature_is_named(store, unchanged, flavor):
    fails_to_train(store, config_for(flavor), frame().assign(color=None), match="feature 'color' has no values")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_constant_feature_trains_with_a_warning_naming_it(store, flavor, caplog):
    data = frame().assign(x2=7.0, color="red")
    data.loc[3, "x1"] = np.nan  # a feature that is only sometimes missing is not constant
    with caplog.at_level(logging.WARNING, logger="airflow_mlops.training.base"):
        trained = train_model(config_for(flavor), data, None, store, output_prefix="m")
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "features 'x2', 'color' have the same value in every training row" in warning
    assert "without 'x2', 'color'" in warning, "the warning says how to leave them out"
    assert trained.metadata["info"]["constant_features"] == ["x2", "color"]
    model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
    assert len(model.predict(frame(5))) == 5


@pytest.mark.parametrize("task", ["binary_classification", "regression"])
@pytest.mark.parametrize("flavor", FLAVORS)
def test_null_targets_are_counted_and_their_rows_named(store, unchanged, flavor, task):
    data = frame(task=task)
    data["label"] = data["label"].astype(object if task != "regression" else float)
    data.loc[[3, 7], "label"] = None
    fails_to_train(store, config_for(flavor, task), data,
                   match=r"the training data: the target 'label' has 2 missing values \(rows 3, 7\); drop those rows")
    many = frame(task=task)
    many["label"] = many["label"].astype(object if task != "regression" else float)
    many.loc[list(range(10, 40, 3)), "label"] = None
    fails_to_train(store, config_for(flavor, task), frame(task=task), many,
                   match=r"the validation data: the target 'label' has 10 missing values \(rows 10, 13, 16, 19, 22, \.\.\.\)")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_infinite_targets_are_counted_and_their_rows_named(store, unchanged, flavor):
    data = frame(task="regression")
    data.loc[5, "label"] = np.inf
    data.loc[9, "label"] = -np.inf
    fails_to_train(store, config_for(flavor, "regression"), data,
                   match=r"the target 'label' has 2 infinite values \(rows 5, 9\)")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_one_class_target_says_what_to_check(store, unchanged, flavor):
    fails_to_train(store, config_for(flavor), frame().assign(label="yes"),
                   match=r"only one class \('yes'\) in 60 rows; a classifier needs two or more: check that data.target")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_empty_training_data_and_data_without_features_are_named(store, unchanged, flavor):
    fails_to_train(store, config_for(flavor), frame().iloc[:0], match="the training data has no rows; check the data's path")
    fails_to_train(store, config_for(flavor), pd.DataFrame(), match="the training data has no rows")
    fails_to_train(store, config_for(flavor), frame()[["label"]],
                   match="the training data has no feature columns besides the target 'label'")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_infinite_feature_values_are_named_with_their_count(store, unchanged, flavor):
    data = frame()
    data.loc[[1, 2], "x1"] = np.inf
    data.loc[4, "x2"] = -np.inf
    fails_to_train(store, config_for(flavor), data,
                   match=r"the training data has infinite feature values \(inf or -inf\) in 'x1' \(2 values\), 'x2' \(1 value\)")
    fails_to_train(store, config_for(flavor), frame(), data, match=r"the validation data has infinite feature values .* 'x1' \(2 values\)")


# ---------------------------------------------------------------------- scoring, every flavor


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Per flavor and task: a model with a categorical feature, and one on numbers only (the column path)."""
    store = LocalArtifactStore(tmp_path_factory.mktemp("models"))
    loaded = {}
    for flavor in FLAVORS:
        for task in ("binary_classification", "regression"):
            for kind, data in (("mixed", frame(task=task)), ("numeric", frame(task=task).drop(columns=["color"]))):
                trained = train_model(config_for(flavor, task), data, None, store, output_prefix=f"{flavor}/{task}/{kind}")
                model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
                loaded[(flavor, task) if kind == "mixed" else (flavor, task, kind)] = model
    return loaded


@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_empty_frame_is_scored_as_no_predictions(models, flavor):
    classifier, regressor = models[flavor, "binary_classification"], models[flavor, "regression"]
    empty = frame().iloc[:0]
    predictions = classifier.predict(empty)
    assert predictions.shape == (0,) and predictions.dtype == np.asarray(classifier.classes).dtype
    assert classifier.predict_proba(empty).shape == (0, 2)
    assert regressor.predict(empty).shape == (0,)
    with pytest.raises(DataError, match="missing feature column 'x2'"):
        classifier.predict(empty.drop(columns=["x2"]))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_infinite_feature_values_are_refused_at_scoring(models, flavor):
    model = models[flavor, "binary_classification"]
    data = frame(10)
    data.loc[2, "x2"] = -np.inf
    data.loc[3, "x1"] = np.nan  # missing is allowed: only infinities are refused
    for predict in (model.predict, model.predict_proba):
        with pytest.raises(DataError, match=r"the data has infinite feature values \(inf or -inf\) in 'x2' \(1 value\)"):
            predict(data)
    assert len(model.predict(data.assign(x2=0.0))) == 10


@pytest.mark.parametrize("task", ["binary_classification", "regression"])
@pytest.mark.parametrize("flavor", FLAVORS)
def test_infinite_feature_values_are_refused_on_the_column_path(models, flavor, task):
    model = models[flavor, task, "numeric"]
    with pytest.raises(DataError, match=r"the data has infinite feature values \(inf or -inf\) in 'x1' \(1 value\)"):
        model.predict_columns([np.array([0.5, np.inf, -1.0]), np.array([1.0, 2.0, np.nan])])
    predictions, _ = model.predict_columns([np.array([0.5, 0.0, -1.0]), np.array([1.0, 2.0, np.nan])])
    assert predictions.shape == (3,)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_frame_with_duplicate_columns_is_refused_at_scoring(models, flavor):
    data = frame(5)
    with pytest.raises(DataError, match=r"the data has duplicate column names: 'x1' \(2 times\)"):
        models[flavor, "binary_classification"].predict(pd.concat([data, data[["x1"]]], axis=1))


# ---------------------------------------------------------------------- splitting


def test_split_names_duplicate_columns_null_and_infinite_targets_and_one_class(store, unchanged):
    split = lambda data, **kw: split_dataset(  # noqa: E731
        data, target="label", validation=0.2, test=0.2, stratify=kw.get("stratify", True), seed=1, out_prefix="s", store=store)
    data = frame()
    with pytest.raises(DataError, match=r"the data has duplicate column names: 'x1' \(2 times\)"):
        split(pd.concat([data, data[["x1"]]], axis=1))
    nulls = data.assign(label=data["label"].astype(object))
    nulls.loc[[0, 8], "label"] = None
    with pytest.raises(DataError, match=r"the data: the target 'label' has 2 missing values \(rows 0, 8\)"):
        split(nulls)
    infinite = frame(task="regression")
    infinite.loc[4, "label"] = np.inf
    with pytest.raises(DataError, match=r"the target 'label' has 1 infinite value \(row 4\)"):
        split(infinite, stratify=False)
    with pytest.raises(DataError, match=r"cannot stratify the test split on 'label': it has only one class \('yes'\) in 60 rows"):
        split(data.assign(label="yes"))


# ---------------------------------------------------------------------- evaluation


def evaluate(models, store, test: pd.DataFrame, flavor: str = "sklearn"):
    return evaluate_candidate(config_for(flavor), models[flavor, "binary_classification"], test, store, report_path="r/eval.html")


def test_a_one_class_test_set_fails_the_gate_saying_why(models, store):
    result = evaluate(models, store, frame().assign(label="yes"))
    assert not result.gate.passed
    assert any("roc_auc cannot be computed on this test set (60 rows): it has only one class ('yes')" in f
               for f in result.gate.failures), result.gate.failures


@pytest.mark.parametrize("flavor", FLAVORS)
def test_an_empty_or_unlabelled_test_set_is_a_data_error_and_writes_no_report(models, store, unchanged, flavor):
    with pytest.raises(DataError, match="the test set has no rows"):
        evaluate(models, store, frame().iloc[:0], flavor)
    unlabelled = frame().assign(label=None)
    with pytest.raises(DataError, match=r"the test set: the target 'label' has 60 missing values \(rows 0, 1, 2, 3, 4, \.\.\.\)"):
        evaluate(models, store, unlabelled, flavor)
