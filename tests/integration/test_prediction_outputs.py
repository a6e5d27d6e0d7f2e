"""What monitoring needs from evaluation and batch inference: stored test predictions, prediction drift
against them, sane outputs only, and slice columns carried into the output."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.data import write_table
from airflow_mlops.drift import check_prediction_drift
from airflow_mlops.errors import ConfigError, DataError, IntegrityError
from airflow_mlops.evaluation import evaluate_candidate
from airflow_mlops.inference import commit_batch, plan_batch, read_output, score_chunk
from airflow_mlops.monitoring.outputs import output_schema, recorded_classes
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage import LocalArtifactStore
from airflow_mlops.training import load_model, train_model

FEATURES = ["f0", "f1", "f2", "f3"]


def config(monitoring: bool = True, **drift):
    return parse_pipeline_config({
        "pipeline": "churn",
        "data": {"train": "train.parquet", "target": "label", "ids": ["customer"], "features": FEATURES},
        "model": {"flavor": "xgboost", "task": "binary_classification", "params": {"n_estimators": 15, "max_depth": 3}},
        "evaluation": {"slices": [{"column": "region", "min_size": 10}]},
        "inference": {"input": "incoming/", "output": "scores/", "chunk_rows": 700},
        "drift": drift,
        **({"monitoring": {"slices": [{"column": "segment"}]}} if monitoring else {}),
    })


def frame(rows: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    x[:, 0] += shift
    return pd.DataFrame({"customer": np.arange(rows) + seed * 100_000, **{f: x[:, i] for i, f in enumerate(FEATURES)},
                         "region": rng.choice(["north", "south", "east"], rows),
                         "segment": rng.choice(["retail", "business"], rows),
                         "label": (x[:, 0] + x[:, 1] > 0).astype(int)})


@pytest.fixture
def store(tmp_path):
    return LocalArtifactStore(tmp_path / "root")


@pytest.fixture
def model(store, tmp_path):
    """(registry with the champion v1, the loaded model)."""
    trained = train_model(config(), frame(800), None, store, output_prefix="models/v1")
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'registry.db'}")
    version = registry.register_version("churn", artifact_uri=trained.model_uri, artifact_sha256=trained.artifact.sha256,
                                        flavor="xgboost", task="binary_classification")
    registry.set_alias("churn", "champion", version.version, reason="test")
    return registry, load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)


def score_batch(store, registry, data: pd.DataFrame, run_id: str, cfg=None, **options):
    write_table(data.drop(columns=["label"]), f"incoming/{run_id}.parquet", store)
    plan = plan_batch(cfg or config(), registry, store, run_id=run_id, input_uri=f"incoming/{run_id}.parquet")
    manifest = commit_batch(plan, [score_chunk(plan, c.index, store, **options) for c in plan.chunks], store)
    return plan, manifest


# ------------------------------------------------------------------- stored test predictions


def test_evaluation_stores_the_test_predictions_beside_its_report(store, model):
    _, loaded = model
    test = frame(400, seed=5)
    calls: list[int] = []
    predict_proba = loaded.predict_proba
    loaded.predict_proba = lambda data: calls.append(len(data)) or predict_proba(data)
    evaluation = evaluate_candidate(config(), loaded, test, store, report_path="runs/r1/evaluate/evaluation.html")
    assert calls.count(len(test)) == 1, "the metrics' predictions are the ones stored: the test set is predicted once"

    record = evaluation.record
    assert record["predictions_uri"] == store.uri("runs/r1/evaluate/test_predictions.parquet")
    assert record["predictions_sha256"] == store.sha256(record["predictions_uri"])
    stored = pq.read_table(store.uri(record["predictions_uri"]).removeprefix("file://"))
    # Two classes: only the positive class's probability (the other is one minus it), as in a batch output.
    assert stored.column_names == ["label", "prediction", "proba_1", "segment", "region"]
    assert stored["label"].to_pylist() == test["label"].tolist()
    np.testing.assert_allclose(stored["proba_1"].to_numpy(), predict_proba(test)[:, 1], rtol=1e-6)
    assert stored["prediction"].to_pylist() == loaded.predict(test).tolist()
    assert stored["region"].to_pylist() == test["region"].tolist()


def test_stored_probabilities_are_named_and_typed_as_in_a_batch_output(store, model):
    registry, loaded = model
    evaluation = evaluate_candidate(config(), loaded, frame(300, seed=5), store, report_path="eval/evaluation.html")
    plan, _ = score_batch(store, registry, frame(300, seed=6), "r1")
    stored = pq.read_schema(store.uri(evaluation.record["predictions_uri"]).removeprefix("file://"))
    output = pq.read_schema(store.uri(plan.part_uri(0)).removeprefix("file://"))
    assert "proba_0" not in output.names and "proba_0" not in stored.names
    for column in ("prediction", "proba_1"):
        assert stored.field(column).type == output.field(column).type, column
    # Only the positive class's probability is stored, so both files name both classes for their readers.
    assert recorded_classes(stored) == recorded_classes(output) == ["0", "1"]
    assert recorded_classes(output_schema(plan.manifest_uri, store)) == ["0", "1"]


# ------------------------------------------------------------------------- prediction drift


@pytest.fixture
def reference(store, model):
    _, loaded = model
    return evaluate_candidate(config(), loaded, frame(1500, seed=5), store, report_path="eval/evaluation.html").record


def test_prediction_drift_is_found_on_a_shifted_batch_and_not_on_a_like_one(store, model, reference):
    registry, _ = model
    cfg = config(sample_rows=500, threshold=0.01)  # a p-value test at 0.05 flags one like batch in twenty
    _, same = score_batch(store, registry, frame(3000, seed=7), "same")
    _, shifted = score_batch(store, registry, frame(3000, seed=8, shift=2.5), "shifted")
    quiet = check_prediction_drift(cfg, reference["predictions_uri"], same.uri, store, report_path="d/same.html",
                                   reference_sha256=reference["predictions_sha256"])
    drifted = check_prediction_drift(cfg, reference["predictions_uri"], shifted.uri, store, report_path="d/shifted.html")

    assert quiet.gate.gate == "prediction_drift" and quiet.gate.passed, quiet.gate.failures
    assert not drifted.gate.passed and drifted.gate.policy == "warn"
    assert "proba_1" in drifted.drifted_columns
    assert set(drifted.gate.metrics["columns"]) == {"prediction", "proba_1"}
    assert drifted.gate.metrics["current_rows"] == 500, "the output is sampled to drift.sample_rows while streamed"
    assert drifted.record["passed"] is False and drifted.record["report_uri"] == drifted.gate.report.uri
    assert set(drifted.record) == {"drift_share", "drifted_columns", "passed", "reference_fingerprint",
                                   "current_fingerprint", "report_uri"}
    again = check_prediction_drift(cfg, reference["predictions_uri"], shifted.uri, store, report_path="d/again.html")
    assert again.record["current_fingerprint"] == drifted.record["current_fingerprint"], "the sample is seeded"
    failing = check_prediction_drift(config(sample_rows=500, on_drift="fail"), reference["predictions_uri"], shifted.uri,
                                     store, report_path="d/fail.html")
    assert failing.gate.policy == "fail"


def test_prediction_drift_reads_only_verified_committed_parts(store, model, reference):
    registry, _ = model
    plan, manifest = score_batch(store, registry, frame(1000, seed=7), "r1")
    with pytest.raises(DataError, match="never committed"):
        check_prediction_drift(config(), reference["predictions_uri"], f"{plan.output_prefix}/missing.json", store,
                               report_path="d.html")
    with pytest.raises(IntegrityError):
        check_prediction_drift(config(), reference["predictions_uri"], manifest.uri, store, report_path="d.html",
                               reference_sha256="0" * 64)
    part = plan.part_uri(0)
    write_table(read_output(plan.output_prefix, store).iloc[:10], part, store)  # rewritten after the commit
    with pytest.raises(IntegrityError):
        check_prediction_drift(config(), reference["predictions_uri"], manifest.uri, store, report_path="d.html")


# --------------------------------------------------------------------------- sane outputs


def _corrupt(kind: str, predictions: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    predictions, proba = predictions.copy(), proba.copy()
    if kind in ("nan prediction", "inf prediction"):
        values = predictions.astype("float64")
        values[[4, 9]] = np.nan if kind == "nan prediction" else -np.inf
        return values, None
    if kind == "nan probability":
        proba[4, 1] = np.nan
    elif kind == "outside [0, 1]":
        proba[4] = [-0.25, 1.25]
        proba[9] = [-0.5, 1.5]
    return predictions, proba


@pytest.mark.parametrize(("kind", "message"), [
    ("nan prediction", "chunk 0: 2 predictions are NaN or infinite (first at row 104)"),
    ("inf prediction", "chunk 0: 2 predictions are NaN or infinite (first at row 104)"),
    ("nan probability", "chunk 0: 1 probabilities are NaN or infinite (first at row 104)"),
    # Two classes: only the positive class's probability is written, so only it is checked.
    ("outside [0, 1]", "chunk 0: 2 probabilities outside [0, 1] (first at row 104)"),
])
def test_a_chunk_with_unusable_output_fails_by_name_and_writes_nothing(store, model, monkeypatch, kind, message):
    from airflow_mlops.inference import score

    registry, _ = model
    write_table(frame(700, seed=3).drop(columns=["label"]), "incoming/batch.parquet", store)
    plan = plan_batch(config(), registry, store, run_id="r1", input_uri="incoming/batch.parquet")
    start, first_id = score._start_prediction, 3 * 100_000  # frame(seed=3) numbers its customers from here

    def second_batch_corrupted(model, batch):
        # Known by its rows, not by call order: two batches predict at once.
        second = batch.column("customer")[0].as_py() == first_id + 100
        return start(model, batch).then(lambda result: _corrupt(kind, *result) if second else result)

    monkeypatch.setattr(score, "_start_prediction", second_batch_corrupted)
    with pytest.raises(DataError, match=re.escape(message)) as raised:
        score_chunk(plan, 0, store, batch_rows=100)
    assert "nothing of this chunk is written" in str(raised.value)
    assert not store.exists(plan.part_uri(0)) and store.list(plan.output_prefix) == []
    with pytest.raises(DataError, match="chunk 0 has no result"):
        commit_batch(plan, [], store)
    assert not store.exists(plan.manifest_uri)


def test_float32_probabilities_of_many_classes_pass_the_sum_check():
    from airflow_mlops.inference.score import require_sane_outputs

    logits = np.random.default_rng(0).normal(size=(10_000, 30)).astype("float32")
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    require_sane_outputs(np.argmax(proba, axis=1), proba, index=0, first_row=0)
    require_sane_outputs(np.full(3, 1e38, dtype="float32"), None, index=0, first_row=0)  # an overflowing sum is not inf


# --------------------------------------------------------------------- slices in the output


def test_monitored_slice_columns_travel_into_the_output_beside_the_ids(store, model):
    registry, _ = model
    data = frame(900, seed=4)
    plan, _ = score_batch(store, registry, data, "r1")
    assert plan.id_columns == ["customer"] and plan.slice_columns == ["segment"]
    output = read_output(plan.output_prefix, store)
    assert list(output.columns[:3]) == ["customer", "segment", "prediction"]
    merged = data[["customer", "segment"]].merge(output[["customer", "segment"]], on="customer", suffixes=("", "_out"))
    assert len(merged) == len(data) and (merged["segment"] == merged["segment_out"]).all()

    without_monitoring, _ = score_batch(store, registry, data, "r2", cfg=config(monitoring=False))
    assert without_monitoring.slice_columns == []
    assert "segment" not in read_output(without_monitoring.output_prefix, store).columns


def test_missing_slice_columns_are_refused_at_planning(store, model):
    registry, _ = model
    write_table(frame(300).drop(columns=["label", "segment"]), "incoming/no_segment.parquet", store)
    with pytest.raises(DataError, match="lacks 'segment', named in data.ids or monitoring.slices"):
        plan_batch(config(), registry, store, run_id="r1", input_uri="incoming/no_segment.parquet")


def test_a_slice_may_not_be_named_like_an_output_column(store, model):
    registry, _ = model
    cfg = config()
    cfg.monitoring.slices[0].column = "prediction"
    with pytest.raises(ConfigError, match="'prediction'"):
        plan_batch(cfg, registry, store, run_id="r1", input_uri="incoming/")


def test_probabilities_of_three_or_more_classes_must_sum_to_one():
    from airflow_mlops.inference.score import require_sane_outputs

    proba = np.full((50, 3), 1 / 3)
    require_sane_outputs(np.zeros(50), proba, index=2, first_row=100)
    proba[[7, 9]] *= 0.9
    with pytest.raises(DataError, match=re.escape("chunk 2: 2 rows of probabilities do not sum to 1 "
                                                  "(tolerance 1e-06) (first at row 107)")):
        require_sane_outputs(np.zeros(50), proba, index=2, first_row=100)


def test_batches_predicted_two_at_a_time_are_written_in_input_order(store, model):
    registry, loaded = model
    data = frame(2_000, seed=4)
    plan, _ = score_batch(store, registry, data, "r-order", batch_rows=64)  # 32 batches, two predicting at once
    output = read_output(plan.output_prefix, store)
    assert output["customer"].tolist() == data["customer"].tolist()
    np.testing.assert_allclose(output["proba_1"].to_numpy(), loaded.predict_proba(data)[:, 1], rtol=1e-6)
    assert output["prediction"].tolist() == loaded.predict(data).tolist()


def test_columns_written_by_scoring_are_required_and_cheaply_encoded(store, model):
    registry, loaded = model
    cfg = config()
    cfg.inference.row_numbers = True
    data = frame(900, seed=4)
    plan, _ = score_batch(store, registry, data, "r-encoded", cfg=cfg, batch_rows=256)
    part = pq.ParquetFile(store.uri(plan.part_uri(0)).removeprefix("file://"))
    schema = part.schema_arrow
    own = ["prediction", "proba_1", "model_name", "model_version", "run_id", "source_file", "source_row"]
    # Never null, so declared required: no definition levels to write or read. Ids stay as the input has them.
    assert [schema.field(c).nullable for c in own] == [False] * len(own)
    assert schema.field("customer").nullable and schema.field("segment").nullable
    encodings = {part.metadata.row_group(0).column(i).path_in_schema: part.metadata.row_group(0).column(i).encodings
                 for i in range(part.metadata.num_columns)}
    for column in ("prediction", "model_version", "source_row"):  # integers: deltas, no hashing per row
        assert "DELTA_BINARY_PACKED" in encodings[column], (column, encodings[column])
    for column in ("model_name", "run_id", "source_file"):  # one-entry dictionaries, written as they are
        assert "RLE_DICTIONARY" in encodings[column], (column, encodings[column])
    output = read_output(plan.output_prefix, store)
    assert output["model_version"].unique().tolist() == [1]
    assert output["source_row"].tolist() == list(range(700)) + list(range(700, 900))
    assert output["prediction"].tolist() == loaded.predict(data).tolist()
