"""Drift checks: per-column methods, the dataset rule, target/prediction drift, the large-data policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.data import write_table
from airflow_mlops.drift import check_drift
from airflow_mlops.errors import DataError
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage import LocalArtifactStore


def config(**drift):
    return parse_pipeline_config({
        "pipeline": "shop", "data": {"train": "t.parquet", "target": "label", "ids": ["id"]},
        "model": {"flavor": "sklearn", "task": "binary_classification"}, "drift": drift,
    })


def tables(rows: int = 3000, shift: tuple[str, ...] = ("a", "b", "c")) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)

    def make(seed_shift: int, shifted: bool) -> pd.DataFrame:
        r = np.random.default_rng(seed_shift)
        data = {"id": np.arange(rows)}
        for name in "abcde":
            data[name] = r.normal(size=rows) + (3.0 if shifted and name in shift else 0.0)
        data["color"] = r.choice(["red", "blue", "green"], rows, p=[0.1, 0.1, 0.8] if shifted and "color" in shift else [0.4, 0.3, 0.3])
        data["label"] = r.choice([0, 1], rows)
        return pd.DataFrame(data)

    del rng
    return make(1, False), make(2, True)


@pytest.fixture
def store(tmp_path):
    return LocalArtifactStore(tmp_path)


def test_drifted_columns_are_named_with_method_score_and_threshold(store):
    reference, current = tables()
    result = check_drift(config(drift_share=0.5), reference, current, store, report_path="r/drift.html")
    assert result.drifted_columns == ["a", "b", "c"]
    assert not result.gate.passed, "3 of 6 feature columns is 50%: at drift_share 0.5 the dataset drifts"
    first = result.gate.failures[0]
    assert first.startswith("a: drifted (") and "score" in first and "threshold" in first
    assert result.gate.metrics["n_columns"] == 6, "ids and the target are not features"
    assert "<html" in store.read_bytes(result.gate.report.uri).decode()[:200].lower()


def test_the_dataset_drifts_at_the_configured_share(store):
    reference, current = tables(shift=("a", "b", "c", "d"))
    assert not check_drift(config(drift_share=0.5), reference, current, store, report_path="r.html").gate.passed
    assert check_drift(config(drift_share=0.9), reference, current, store, report_path="r.html").gate.passed
    quiet = check_drift(config(), *tables(shift=()), store, report_path="r.html")
    assert quiet.gate.passed and quiet.drifted_columns == []


def test_per_column_method_and_threshold(store):
    reference, current = tables()
    result = check_drift(config(method="psi", per_column={"a": {"method": "ks", "threshold": 0.01}}),
                         reference, current, store, report_path="r.html")
    columns = result.gate.metrics["columns"]
    assert (columns["a"]["method"], columns["a"]["threshold"]) == ("ks", 0.01)
    assert columns["b"]["method"] == "psi"


def test_target_drift_is_reported_when_present_and_predictions_are_left_to_prediction_drift(store):
    reference, current = tables(shift=())
    current = current.assign(label=1, prediction=1.0)
    reference = reference.assign(prediction=np.linspace(0, 1, len(reference)))
    result = check_drift(config(), reference, current, store, report_path="r.html")
    assert "label" in result.gate.metrics["columns"]
    assert "prediction" not in result.gate.metrics["columns"], "check_prediction_drift compares predictions"
    assert any(f.startswith("label: drifted") for f in result.gate.failures)
    assert result.gate.passed, "target drift is reported but the share counts features only"


def test_large_inputs_are_sampled_and_the_reference_sample_is_cached(store, monkeypatch):
    reference, current = tables(rows=5000)
    write_table(reference, "ref.parquet", store)
    cfg = config(sample_rows=1000)
    first = check_drift(cfg, "ref.parquet", current, store, report_path="r.html", reference_cache_key="v7")
    assert first.gate.metrics["reference_rows"] == 1000 and first.gate.metrics["current_rows"] == 1000
    cached = [u for u in store.list("pipelines/shop/drift-reference/v7") if u.endswith(".parquet")]
    assert len(cached) == 1
    from airflow_mlops.drift import core

    monkeypatch.setattr(core, "stream_sample", lambda *a, **k: pytest.fail("the full reference must not be read again"))
    again = check_drift(cfg, "ref.parquet", current.iloc[:1000], store, report_path="r.html", reference_cache_key="v7")
    assert again.drifted_columns == first.drifted_columns


def test_streamed_samples_are_exact_seeded_in_order_and_independent_of_batch_size(store):
    from airflow_mlops.drift.core import stream_sample

    rows = 50_000
    frame = pd.DataFrame({"i": np.arange(rows), "x": np.random.default_rng(3).normal(size=rows)})
    for part in range(4):  # a folder of four parts, streamed one after the other
        write_table(frame.iloc[part * rows // 4:(part + 1) * rows // 4], f"big/part-{part}.parquet", store)
    sample = stream_sample("big", store, ["i", "x"], 1000, seed=42, batch_rows=777)
    # Exactly the rows whose seeded keys are the 1000 smallest, in the data's order.
    keys = np.random.default_rng(42).random(rows)
    assert sample["i"].tolist() == sorted(np.argsort(keys)[:1000].tolist())
    assert sample["x"].tolist() == frame["x"].iloc[sample["i"]].tolist()
    assert stream_sample("big", store, ["i", "x"], 1000, seed=42, batch_rows=65_536).equals(sample)
    assert not stream_sample("big", store, ["i"], 1000, seed=7)["i"].equals(sample["i"])
    # At or below the limit, and without one, every row comes back in order.
    assert stream_sample("big", store, ["i"], None, seed=42)["i"].tolist() == list(range(rows))
    assert stream_sample("big", store, ["i"], rows, seed=42, batch_rows=999)["i"].tolist() == list(range(rows))


def test_the_drift_step_records_the_check_with_its_run_id(store, tmp_path):
    """The step writes the record (the ML module never touches the registry) and keeps the run id."""
    from airflow_mlops.steps import check_pipeline_drift

    registry = ModelRegistry(f"sqlite:///{tmp_path / 'r.db'}")
    reference, current = tables(shift=("a", "b", "c", "d"))
    write_table(reference, "ref.parquet", store)
    write_table(current, "current.parquet", store)
    outcome = check_pipeline_drift(config(reference="ref.parquet"), store, registry, current_uri="current.parquet",
                                   report_path="r.html", run_id="manual__2026-11-28")
    record = registry.drift_records("shop")[-1]
    assert record.drifted_columns == outcome.drifted_columns and not record.passed
    assert record.report_uri == outcome.gate.report.uri
    assert record.run_id == "manual__2026-11-28"


def test_columns_must_exist_on_both_sides(store):
    reference, current = tables()
    with pytest.raises(DataError, match="'zz' must be in both"):
        check_drift(config(columns=["a", "zz"]), reference, current, store, report_path="r.html")
