"""Hostile and broken pipeline files: each is a named ConfigError, never a crash, a hang or a silent accept.

The crash cases run `airflow-mlops validate` in a child process, so a segfault or a hang
fails one test instead of taking pytest down with it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_mlops.config import load_pipeline_config
from airflow_mlops.config.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES
from airflow_mlops.errors import ConfigError

EXAMPLE = (Path(__file__).resolve().parents[2] / "dags" / "configs" / "breast_cancer.yaml").read_text()


def example(old: str, new: str) -> str:
    assert old in EXAMPLE, old
    return EXAMPLE.replace(old, new, 1)


def validate_in_a_child(path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_mlops.cli", "validate", str(path)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def config_error(tmp_path: Path, text: str, name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(path)
    message = str(info.value)
    assert message.startswith(f"{name}: "), message
    return message


# ------------------------------------------------------------------ crashes and hangs


def test_a_hundred_thousand_open_brackets_are_refused_not_a_segfault(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("pipeline: " + "[" * 100_000 + "\n")
    done = validate_in_a_child(path)
    assert done.returncode == 1, f"exit {done.returncode} (-11 is a segfault): {done.stderr[-500:]}"
    assert f"deep.yaml: line 1: nested more than {MAX_DEPTH} levels deep" in done.stderr


def test_deep_block_nesting_is_refused_too(tmp_path):
    text = "".join(f"{'  ' * level}k{level}:\n" for level in range(MAX_DEPTH + 5))
    assert f"nested more than {MAX_DEPTH} levels deep" in config_error(tmp_path, text)


def test_nesting_within_the_limit_still_loads_as_a_value(tmp_path):
    nested = "[" * (MAX_DEPTH - 4) + "1" + "]" * (MAX_DEPTH - 4)
    path = tmp_path / "p.yaml"
    path.write_text(example("params: {n_estimators: 200,", f"params: {{deep: {nested}, n_estimators: 200,"))
    assert load_pipeline_config(path).model.params["n_estimators"] == 200


def billion_laughs(levels: int) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"[:levels]
    for previous, name in zip(names, names[1:], strict=False):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_quickly_with_a_short_message(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs(9) + example("pipeline: breast_cancer", "pipeline: *i"))
    started = time.monotonic()
    done = validate_in_a_child(path, timeout=60)
    assert done.returncode == 1, done.stderr[-500:]
    assert time.monotonic() - started < 30
    assert f"more than {MAX_VALUES} values once aliases are expanded" in done.stderr
    assert len(done.stderr) < 1000


def test_aliases_under_the_cap_give_short_messages_naming_each_field(tmp_path):
    # 6,561 values per use: under the cap, so pydantic validates them and the message shows a bounded repr.
    text = billion_laughs(4) + example("pipeline: breast_cancer", "pipeline: *d").replace(
        "owner: ml-platform", "owner: *d"
    )
    message = config_error(tmp_path, text)
    lines = message.splitlines()
    assert lines[0].startswith("p.yaml: pipeline: input should be a valid string, got [[[")
    assert any(line.startswith("p.yaml: owner: input should be a valid string") for line in lines)
    assert all(len(line) <= 500 for line in lines)


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    message = config_error(tmp_path, "a: &a [1, *a]\n" + EXAMPLE)
    assert message == "p.yaml: line 1: the alias 'a' is used inside the value it names"


def test_a_file_over_the_size_cap_is_refused_before_parsing(tmp_path):
    padding = "# " + "x" * 1000 + "\n"
    text = EXAMPLE + padding * (MAX_FILE_BYTES // len(padding) + 1)
    assert config_error(tmp_path, text) == "p.yaml: larger than 1 MiB; a pipeline file needs a few KiB"


def test_a_huge_scalar_is_named_in_a_bounded_message(tmp_path):
    message = config_error(tmp_path, example("pipeline: breast_cancer", "pipeline: " + "A" * 900_000))
    assert message.startswith("p.yaml: pipeline: string should have at most 200 characters, got 'AAAA")
    assert len(message) < 300


def test_a_huge_integer_seed_is_named_without_printing_its_digits(tmp_path):
    message = config_error(tmp_path, example("  seed: 42\nevaluation", "  seed: " + "9" * 4000 + "\nevaluation"))
    assert message == "p.yaml: model.seed: input should be less than or equal to 4294967295, got <int of 13288 bits>"


def test_thousands_of_problems_list_the_first_twenty(tmp_path):
    emails = ", ".join(["not-an-address"] * 5000)
    message = config_error(tmp_path, example("  email: []", f"  email: [{emails}]"))
    lines = message.splitlines()
    assert len(lines) == 21
    assert lines[-1] == "p.yaml: ... and 4980 more problems"


# ----------------------------------------------------------------- duplicate keys


def test_a_duplicate_pipeline_key_names_the_key_and_both_lines(tmp_path):
    message = config_error(tmp_path, EXAMPLE + "pipeline: other\n")
    last = len(EXAMPLE.splitlines()) + 1
    assert message == (
        f"p.yaml: not valid YAML (line {last}, column 1): duplicate key 'pipeline': first on line 1, "
        f"again on line {last}; a key may appear only once in a mapping"
    )


def test_a_duplicate_key_in_a_nested_flow_mapping_is_refused(tmp_path):
    message = config_error(tmp_path, example("thresholds: {roc_auc: {min: 0.9}", "thresholds: {roc_auc: {min: 0.9, min: 0.1}"))
    assert "duplicate key 'min': first on line 27, again on line 27" in message


def test_merge_keys_may_still_override_what_they_merge(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(example("thresholds: {roc_auc: {min: 0.9}", "thresholds: {roc_auc: {<<: {min: 0.5}, min: 0.9}"))
    assert load_pipeline_config(path).evaluation.thresholds["roc_auc"].min == 0.9


# ----------------------------------------------------------------- semantic checks


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('schedule: "@weekly"', 'schedule: "99 99 * * *"', "retraining.schedule: expected null, a preset"),
        ('schedule: "@weekly"', 'schedule: "0 3 * * 8"', "'0 3 * * 8' is not one"),
        ('schedule: "@weekly"', 'schedule: "*/0 * * * *"', "step '0' in field 0 is not acceptable"),
        ("train: data/breast_cancer/train.parquet", "train: s3:///key", "data.train: 's3:///key' names no bucket"),
        ("train: data/breast_cancer/train.parquet", "train: s3://", "data.train: 's3://' names no bucket"),
        ("train: data/breast_cancer/train.parquet", "train: s3://My_Bucket/x", "'My_Bucket' is not a valid S3 bucket name"),
        ("train: data/breast_cancer/train.parquet", "train: s3://a..b/x", "'a..b' is not a valid S3 bucket name"),
        ("train: data/breast_cancer/train.parquet", "train: s3://10.0.0.1/x", "'10.0.0.1' is not a valid S3 bucket name"),
        ("train: data/breast_cancer/train.parquet", "train: gs://b/x", "the scheme 'gs' is not supported"),
        ("train: data/breast_cancer/train.parquet", "train: file://../x", "a file:// URI needs an absolute path"),
        ("train: data/breast_cancer/train.parquet", "train: ../../etc/x.parquet", "data.train: the relative path '../../etc/x.parquet' climbs out"),
        ("output: predictions/breast_cancer/", "output: predictions/../../x/", "inference.output: the relative path 'predictions/../../x/' climbs out"),
        ("output: predictions/breast_cancer/", "output: ..", "inference.output: the relative path '..' climbs out"),
        ("input: data/breast_cancer/score/", "input: ../score/", "inference.input: the relative path"),
        ("input: data/breast_cancer/score/", r"input: ..\score", "inference.input: the relative path"),
        ("current: data/breast_cancer/current/", "current: a/../../b", "drift.current: the relative path"),
        ("reference: training", "reference: ../reference.parquet", "drift.reference: the relative path"),
        ("  on_failure: fail\n", "  on_failure: fail\n  suite: ../suite.json\n", "validation.suite: the relative path"),
        ("  seed: 42\nevaluation", "  seed: true\nevaluation", "model.seed: input should be a valid integer, got True"),
        ("  seed: 42\nevaluation", "  seed: '42'\nevaluation", "model.seed: input should be a valid integer, got '42'"),
        ("  seed: 42\nevaluation", "  seed: -1\nevaluation", "model.seed: input should be greater than or equal to 0"),
        ("seed: 42}", "seed: true}", "data.split.seed: input should be a valid integer, got True"),
        ("stratify: true", "stratify: yes", "data.split.stratify: input should be a valid boolean, got 'yes'"),
        ("drift_share: 0.5", "drift_share: true", "drift.drift_share: input should be a valid number, got True"),
        ("chunk_rows: 100000", "chunk_rows: true", "inference.chunk_rows: input should be a valid integer, got True"),
        ("{roc_auc: {min: 0.9}", "{roc_auc: {min: true}", "evaluation.thresholds.roc_auc.min: input should be a valid number, got True"),
        ("thresholds: {roc_auc: {min: 0.9}", "thresholds: {rmse: {max: 0.9}", "evaluation.thresholds: 'rmse' is not a metric for binary_classification"),
        ("primary_metric: roc_auc", "primary_metric: r2", "evaluation.primary_metric: 'r2' is not a metric for binary_classification"),
        ("flavor: xgboost\n  task: binary_classification\n  estimator: null\n  params: {n_estimators: 200, max_depth: 4, learning_rate: 0.1}",
         "flavor: sklearn\n  task: binary_classification\n  estimator: subprocess.Popen\n  params: {args: [touch, /tmp/x]}",
         "model: estimator: expected a scikit-learn estimator such as sklearn.ensemble.RandomForestClassifier, got 'subprocess.Popen'"),
    ],
)
def test_an_invalid_value_is_a_config_error_naming_the_field(tmp_path, old, new, expected):
    assert expected in config_error(tmp_path, example(old, new))


def test_multiclass_has_no_brier_or_pr_auc_thresholds():
    from airflow_mlops.config import parse_pipeline_config

    data = {
        "pipeline": "wine",
        "data": {"train": "wine.parquet", "target": "cultivar"},
        "model": {"flavor": "sklearn", "task": "multiclass_classification"},
        "evaluation": {"thresholds": {"pr_auc": {"min": 0.5}}},
    }
    with pytest.raises(ConfigError, match="evaluation.thresholds: 'pr_auc' is not a metric for multiclass_classification"):
        parse_pipeline_config(data, "wine.yaml")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('schedule: "@weekly"', 'schedule: "0 3 * * 1-5"'),
        ('schedule: "@weekly"', 'schedule: "0 3 * * MON#2"'),
        ('schedule: "@weekly"', 'schedule: "0 3 * * * 30"'),
        ('schedule: "@weekly"', "schedule: null"),
        ("train: data/breast_cancer/train.parquet", "train: s3://my-bucket.example/data/train.parquet"),
        ("train: data/breast_cancer/train.parquet", "train: file:///srv/data/train.parquet"),
        ("train: data/breast_cancer/train.parquet", "train: /srv/data/../train.parquet"),
        ("train: data/breast_cancer/train.parquet", "train: data/./x/../train.parquet"),
        ("output: predictions/breast_cancer/", "output: s3://bucket/predictions/"),
        ("drift_share: 0.5", "drift_share: 1"),
    ],
)
def test_valid_values_still_load(tmp_path, old, new):
    path = tmp_path / "p.yaml"
    path.write_text(example(old, new))
    load_pipeline_config(path)
