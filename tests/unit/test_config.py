from pathlib import Path

import pytest
import yaml

from airflow_mlops.config import (
    PipelineConfig,
    load_pipeline_config,
    load_pipeline_configs,
    parse_pipeline_config,
    pipeline_json_schema,
)
from airflow_mlops.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "dags" / "configs"
MINIMAL = {
    "pipeline": "churn",
    "data": {"train": "data/churn.parquet", "target": "churned"},
    "model": {"flavor": "sklearn", "task": "binary_classification"},
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_example_pipeline_loads():
    loaded = load_pipeline_configs(EXAMPLES)
    assert set(loaded.configs) == {"breast_cancer", "wine", "diabetes"}
    bc = loaded.configs["breast_cancer"]
    assert bc.model.flavor == "xgboost"
    assert bc.evaluation.thresholds["roc_auc"].min == 0.9
    assert bc.alerts.on == ["failure", "gate_failed", "drift", "degradation", "alias_moved"]
    assert bc.monitoring is not None and bc.data.ids == ["patient_id"]
    assert [e.expect for e in bc.validation.expectations][:2] == ["row_count_between", "columns_present"]


def test_a_minimal_file_gets_defaults_for_every_section():
    config = parse_pipeline_config(MINIMAL)
    assert config.data.features == "all"
    assert config.data.split.test == 0.2
    assert config.validation.on_failure == "fail"
    assert config.evaluation.primary_metric == "roc_auc"
    assert "roc_auc" in config.evaluation.metrics
    assert config.evaluation.champion.on_missing == "pass"
    assert config.promotion.alias == "champion"
    assert config.promotion.approval == "none"
    assert config.inference.chunk_rows == 100_000
    assert config.drift.reference == "training"
    assert config.retraining.schedule == "@weekly"


def test_regression_defaults_and_no_stratification():
    config = parse_pipeline_config({**MINIMAL, "model": {"flavor": "torch", "task": "regression"}})
    assert config.evaluation.primary_metric == "rmse"
    assert config.data.split.stratify is False


def test_a_wrong_choice_names_file_field_and_the_choices(tmp_path):
    text = yaml.safe_dump({**MINIMAL, "model": {"flavor": "xgb", "task": "regression"}})
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(write(tmp_path, "breast_cancer.yaml", text))
    assert str(info.value) == (
        "breast_cancer.yaml: model.flavor: expected one of sklearn, xgboost, torch, got 'xgb'"
    )


def test_unknown_fields_are_errors_not_ignored(tmp_path):
    text = yaml.safe_dump({**MINIMAL, "modle": {"flavor": "sklearn"}})
    with pytest.raises(ConfigError, match=r"churn.yaml: modle: unknown field"):
        load_pipeline_config(write(tmp_path, "churn.yaml", text))
    nested = {**MINIMAL, "data": {**MINIMAL["data"], "split": {"tset": 0.3}}}
    with pytest.raises(ConfigError, match=r"data\.split\.tset: unknown field"):
        parse_pipeline_config(nested, "churn.yaml")


def test_missing_required_fields_are_each_named():
    with pytest.raises(ConfigError) as info:
        parse_pipeline_config({"pipeline": "x", "model": {"flavor": "sklearn"}}, "x.yaml")
    message = str(info.value)
    assert "x.yaml: data: required field is missing" in message
    assert "x.yaml: model.task: required field is missing" in message


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"evaluation": {"metrics": ["rmse"]}}, "evaluation.metrics: 'rmse' is not a metric for binary_classification"),
        ({"evaluation": {"thresholds": {"auc": {"min": 0.9}}}}, "evaluation.thresholds: 'auc' is not a metric"),
        ({"evaluation": {"thresholds": {"roc_auc": {}}}}, "a threshold needs min, max or both"),
        ({"retraining": {"schedule": "every day"}}, "retraining.schedule: expected null, a preset"),
        ({"validation": {"expectations": [{"expect": "nul", "column": "a"}]}}, "validation.expectations[0]: expected 'expect' to be one of"),
        ({"validation": {"expectations": [{"expect": "not_null"}]}}, "validation.expectations[0].column: required field is missing"),
        ({"validation": {"expectations": [{"expect": "matches_regex", "column": "a", "regex": "("}]}}, "not a valid regular expression"),
        ({"validation": {"on_failure": "ignore"}}, "validation.on_failure: expected one of fail, skip, warn, got 'ignore'"),
        ({"model": {"flavor": "sklearn", "task": "binary_classification", "estimator": "not a path"}}, "model.estimator: expected an import path"),
        ({"data": {"train": "t.csv", "target": "y", "features": ["y", "x"]}}, "the target column 'y' cannot also be a feature"),
        ({"data": {"train": "t.csv", "target": "y", "split": {"validation": 0.5, "test": 0.5}}}, "validation + test must be below 1"),
        ({"pipeline": "Bad Name"}, "pipeline: string should match pattern"),
        ({"alerts": {"email": ["not-an-address"]}}, "alerts.email[0]"),
        ({"inference": {"chunk_rows": 0}}, "inference.chunk_rows: input should be greater than or equal to 1, got 0"),
        ({"evaluation": {"slices": [{"column": "plan", "thresholds": {"rmse": {"max": 3.0}}}]}},
         "evaluation.slices[0] (plan) thresholds and max_gap: 'rmse' is not a metric for binary_classification"),
        ({"evaluation": {"slices": [{"column": "age", "bins": [30, 10]}]}}, "bin edges must increase"),
        ({"evaluation": {"slices": [{"column": "age", "bins": 1}]}}, "evaluation.slices[0].bins"),
        ({"evaluation": {"fairness": {"sensitive": []}}}, "evaluation.fairness.sensitive"),
        ({"evaluation": {"fairness": {"sensitive": ["sex"], "max": {"parity": 0.1}}}}, "evaluation.fairness.max.parity"),
        ({"evaluation": {"fairness": {"sensitive": ["churned"]}}}, "the target column 'churned' cannot be a sensitive"),
        ({"data": {"train": "t.csv", "target": "y", "features": ["x", "sex"]},
          "evaluation": {"fairness": {"sensitive": ["sex"]}}},
         "'sex' is also in data.features; remove it from data.features, or set evaluation.fairness.as_features: true"),
        ({"model": {"flavor": "sklearn", "task": "regression"}, "evaluation": {"fairness": {"sensitive": ["sex"]}}},
         "evaluation.fairness: 'demographic_parity_difference', 'equalized_odds_difference' compare a classifier's "
         "decisions across groups, and model.task is regression; gate each group's metric with evaluation.slices"),
    ],
)
def test_bad_values_name_the_field_and_what_was_expected(patch, expected):
    with pytest.raises(ConfigError) as info:
        parse_pipeline_config({**MINIMAL, **patch}, "churn.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("churn.yaml: ")


def test_great_expectations_by_class_name_are_accepted():
    config = parse_pipeline_config(
        {**MINIMAL, "validation": {"expectations": [
            {"expect": "ExpectColumnValuesToBeIncreasing", "kwargs": {"column": "ts"}},
            {"expect": "unique", "column": "id", "mostly": 0.99},
        ]}}
    )
    first, second = config.validation.expectations
    assert first.kwargs == {"column": "ts"}
    assert second.mostly == 0.99


def test_yaml_on_and_no_are_strings_not_booleans(tmp_path):
    text = """
pipeline: churn
data: {train: d.parquet, target: churned}
model: {flavor: sklearn, task: binary_classification}
validation:
  expectations:
    - {expect: in_set, column: answer, values: [yes, no]}
alerts:
  on: [failure]
"""
    config = load_pipeline_config(write(tmp_path, "churn.yaml", text))
    assert config.alerts.on == ["failure"]
    assert config.validation.expectations[0].values == ["yes", "no"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "x.yaml: expected a mapping of pipeline fields, got empty"),
        ("- a\n- b\n", "x.yaml: expected a mapping of pipeline fields, got a list"),
        ("pipeline: [unclosed\n", "x.yaml: not valid YAML (line 2, column 1)"),
    ],
)
def test_unreadable_files_are_config_errors(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(write(tmp_path, "x.yaml", text))
    assert str(info.value).startswith(expected)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="pipeline file not found"):
        load_pipeline_config(tmp_path / "nope.yaml")


def test_one_bad_file_does_not_hide_the_good_ones(tmp_path):
    write(tmp_path, "good.yaml", yaml.safe_dump(MINIMAL))
    write(tmp_path, "bad.yaml", yaml.safe_dump({**MINIMAL, "pipeline": "other", "model": {"flavor": "xgb"}}))
    write(tmp_path, "notes.txt", "not a pipeline")
    loaded = load_pipeline_configs(tmp_path, strict=False)
    assert list(loaded.configs) == ["churn"]
    assert [p.name for p in loaded.errors] == ["bad.yaml"]
    assert "bad.yaml: model.flavor" in str(loaded.errors[tmp_path / "bad.yaml"])
    with pytest.raises(ConfigError, match="bad.yaml: model.flavor"):
        load_pipeline_configs(tmp_path)


def test_duplicate_pipeline_names_are_refused(tmp_path):
    write(tmp_path, "a.yaml", yaml.safe_dump(MINIMAL))
    write(tmp_path, "b.yaml", yaml.safe_dump(MINIMAL))
    loaded = load_pipeline_configs(tmp_path, strict=False)
    assert list(loaded.configs) == ["churn"]
    assert "b.yaml: pipeline: 'churn' is already defined in a.yaml" in str(loaded.errors[tmp_path / "b.yaml"])


def test_the_exported_json_schema_accepts_the_examples_and_rejects_typos():
    jsonschema = pytest.importorskip("jsonschema")
    schema = pipeline_json_schema()
    for path in EXAMPLES.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text().replace("\n  on:", '\n  "on":')), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**MINIMAL, "modle": {}}, schema)
    assert schema["properties"]["model"]["$ref"].endswith("ModelConfig")
    assert set(schema["required"]) == {"pipeline", "data", "model"}


def test_config_round_trips_through_json():
    config = load_pipeline_configs(EXAMPLES).configs["breast_cancer"]
    assert PipelineConfig.model_validate_json(config.model_dump_json()) == config


def test_the_pipeline_file_reference_in_docs_is_current():
    from airflow_mlops.config.reference import render_reference

    committed = (EXAMPLES.parents[1] / "docs" / "pipeline-file.md").read_text()
    assert committed == render_reference(), (
        "docs/pipeline-file.md is stale: python -m airflow_mlops.config.reference > docs/pipeline-file.md"
    )


def test_the_dump_operators_receive_validates_again_under_strict_types():
    # Operators get `config.model_dump(mode="json")` and parse it again on the worker.
    for config in load_pipeline_configs(EXAMPLES).configs.values():
        assert parse_pipeline_config(config.model_dump(mode="json"), "dumped") == config


def test_shown_is_bounded_whatever_the_value():
    from airflow_mlops.config.schema import shown

    nested: list = []
    nested.append(nested)
    huge = [["x" * 10_000] * 10_000] * 10_000  # a hundred million references, as an expanded alias would be
    assert shown("a" * 1_000_000).startswith("'aaaa") and len(shown("a" * 1_000_000)) == 80
    assert len(shown(huge)) <= 80
    assert len(shown(nested)) <= 80
    assert shown(10**5000) == "<int of 16610 bits>"
    assert shown(PipelineConfig.model_validate(MINIMAL)) == "<PipelineConfig>"
    assert shown(True) == "True" and shown(0.5) == "0.5" and shown(None) == "None"


def test_slice_gates_fairness_and_explanations_parse_with_defaults():
    config = parse_pipeline_config({**MINIMAL, "evaluation": {
        "metrics": ["accuracy"],
        "slices": ["plan", {"column": "age", "bins": [0, 30, 50, 120], "thresholds": {"roc_auc": {"min": 0.8}},
                            "max_gap": {"f1": 0.05}}, {"column": "age", "bins": 4}],
        "fairness": {"sensitive": ["sex", {"column": "age", "bins": 3}], "min": {"demographic_parity_ratio": 0.8}},
    }, "monitoring": {"labels": "labels/"}})
    evaluation = config.evaluation
    assert evaluation.slices[0].column == "plan" and not evaluation.slices[0].gated
    assert evaluation.slices[1].gated and evaluation.slices[1].gate_metrics() == ["roc_auc", "f1"]
    assert evaluation.metrics == ["accuracy", "roc_auc", "f1"]  # gated slice metrics are computed overall too
    assert evaluation.fairness.metrics == ["demographic_parity_ratio"]
    assert config.sensitive_columns() == ["sex", "age"]
    assert (evaluation.diagnostics.enabled, evaluation.explanations.sample_rows) == (True, 2000)
    # Monitoring takes the columns only (it bins numbers itself and gates nothing), once each.
    assert [(s.column, type(s).__name__) for s in config.monitoring.slices] == [("plan", "SliceConfig"),
                                                                                ("age", "SliceConfig")]
    assert parse_pipeline_config(config.model_dump(mode="json"), "dumped") == config
    default = parse_pipeline_config({**MINIMAL, "evaluation": {"fairness": {"sensitive": ["sex"]}}})
    assert default.evaluation.fairness.metrics == ["demographic_parity_difference", "equalized_odds_difference"]
