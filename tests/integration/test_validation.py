"""The validation gate names every problem a person must fix, on real Great Expectations."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.data import write_table
from airflow_mlops.storage import LocalArtifactStore
from airflow_mlops.validation import (
    scoring_checks,
    suggest_expectations,
    validate_dataframe,
    validate_dataset,
)


def checks(expectations: list[dict], **extra):
    return parse_pipeline_config({
        "pipeline": "p", "data": {"train": "t.parquet", "target": "label"},
        "model": {"flavor": "sklearn", "task": "binary_classification"},
        "validation": {"expectations": expectations, **extra},
    }).validation


@pytest.fixture
def store(tmp_path):
    return LocalArtifactStore(tmp_path)


def frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "id": np.arange(rows), "age": rng.integers(18, 90, rows), "radius": rng.uniform(5, 30, rows),
        "color": rng.choice(["red", "blue"], rows), "label": rng.choice([0, 1], rows),
    })


ALL = [
    {"expect": "row_count_between", "min": 100},
    {"expect": "columns_present", "columns": ["radius", "color"]},
    {"expect": "not_null", "column": "radius"},
    {"expect": "between", "column": "radius", "min": 0, "max": 100},
    {"expect": "in_set", "column": "color", "values": ["red", "blue"]},
    {"expect": "unique", "column": "id"},
    {"expect": "dtype", "column": "age", "dtype": "int64"},
    {"expect": "matches_regex", "column": "color", "regex": "^[a-z]+$"},
]


def test_clean_data_passes_and_a_report_is_written(store):
    result = validate_dataframe(frame(), checks(ALL), store, report_path="r/v.html", dataset_name="train")
    assert result.passed, result.failures
    assert result.summary == "train: 9 of 9 expectations passed on 200 rows"
    assert "<table>" in store.read_bytes(result.report.uri, expected_sha256=result.report.sha256).decode()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda f: f.assign(age=f["age"].astype(str)), "dtype(age): expected int64, found object"),
        (lambda f: f.assign(radius=f["radius"].where(f.index >= 13)), "not_null(radius): 13 of 200 rows are null (6.5%), allowed 0%"),
        (lambda f: f.assign(radius=f["radius"].where(f.index >= 2, 250.0)), "between(radius): 2 of 200 values outside [0.0, 100.0] (1.0%)"),
        (lambda f: f.assign(color=f["color"].where(f.index >= 3, "purple")), "in_set(color): unexpected values 'purple' (3 rows"),
        (lambda f: f.drop(columns=["color"]), "columns_present: missing column 'color'"),
        (lambda f: f.assign(id=f["id"] % 150), "unique(id): 100 rows hold duplicated values"),
        (lambda f: f.iloc[:40], "row_count_between: 40 rows, expected at least 100"),
    ],
    ids=["dtype", "nulls", "range", "category", "missing-column", "duplicated-ids", "row-count"],
)
def test_bad_data_fails_with_a_sentence_naming_the_problem(store, damage, expected):
    result = validate_dataframe(damage(frame()), checks(ALL), store, report_path="r/v.html")
    assert not result.passed
    assert any(expected in failure for failure in result.failures), result.failures


def test_mostly_allows_a_share_of_bad_rows(store):
    data = frame().assign(radius=lambda f: f["radius"].where(f.index >= 10))
    assert validate_dataframe(data, checks([{"expect": "not_null", "column": "radius", "mostly": 0.9}]), store, report_path="r.html").passed
    strict = validate_dataframe(data, checks([{"expect": "not_null", "column": "radius", "mostly": 0.99}]), store, report_path="r.html")
    assert "allowed 1.0%" in strict.failures[0]


def test_any_great_expectations_class_and_a_suite_file(store):
    data = frame()
    result = validate_dataframe(
        data, checks([{"expect": "ExpectColumnValuesToBeIncreasing", "kwargs": {"column": "id"}}]), store, report_path="r.html"
    )
    assert result.passed
    store.write_json("suite.json", {"expectations": [{"type": "expect_column_max_to_be_between", "kwargs": {"column": "age", "max_value": 50}}]})
    suite = validate_dataframe(data, checks([], suite="suite.json"), store, report_path="r.html")
    assert not suite.passed and "expect_column_max_to_be_between" in suite.failures[0]


def test_unreadable_inputs_are_failed_gates_naming_the_problem(store, tmp_path):
    config = checks(ALL, on_failure="skip")
    (tmp_path / "fake.parquet").write_text("not parquet")
    cases = {"fake.parquet": "is not a parquet file", "missing.parquet": "no such file or folder"}
    write_table(frame(0), "empty.parquet", store)
    cases["empty.parquet"] = "the dataset is empty"
    for uri, expected in cases.items():
        result = validate_dataset(uri, config, store, report_path="r.html")
        assert not result.passed and result.policy == "skip"
        assert expected in result.failures[0], result.failures


def test_scoring_checks_drop_target_and_row_counts():
    config = checks(ALL + [{"expect": "in_set", "column": "label", "values": [0, 1]},
                           {"expect": "columns_present", "columns": ["label", "radius"]}])
    kept = scoring_checks(config, "label").expectations
    assert all(getattr(e, "column", None) != "label" for e in kept)
    assert not any(e.expect == "row_count_between" for e in kept)
    assert [e.columns for e in kept if e.expect == "columns_present"][-1] == ["radius"]


def test_great_expectations_stays_quiet_in_the_logs(store, caplog):
    with caplog.at_level(logging.INFO):
        validate_dataframe(frame(), checks(ALL), store, report_path="r.html")
    noisy = [r for r in caplog.records if r.name.startswith("great_expectations") and r.levelno < logging.WARNING]
    assert noisy == []


def test_suggested_expectations_load_as_a_pipeline_block_and_pass_on_their_data(store):
    import yaml

    from airflow_mlops.validation import expectations_yaml

    data = frame()
    block = expectations_yaml(suggest_expectations(data))
    parsed = checks(yaml.safe_load(block)["expectations"])
    kinds = {e.expect for e in parsed.expectations}
    assert {"row_count_between", "columns_present", "not_null", "between", "in_set", "unique"} <= kinds
    assert validate_dataframe(data, parsed, store, report_path="r.html").passed


def test_cli_suggest_prints_a_block(store, capsys, tmp_path):
    from airflow_mlops.cli import main

    write_table(frame(), "d.parquet", store)
    assert main(["validation", "suggest", "d.parquet", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("expectations:\n  - {expect: row_count_between")
