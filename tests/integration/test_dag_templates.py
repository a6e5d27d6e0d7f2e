"""The DAG templates parse, build one DAG per pipeline file, and stay light at parse time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
KINDS = ("retrain", "rollback", "announce", "batch_inference", "drift")
HEAVY = ("torch", "xgboost", "sklearn", "great_expectations", "evidently", "fairlearn", "pandas", "pyarrow", "boto3")

PARSE_SCRIPT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "dag_ids": sorted(bag.dag_ids),
    "errors": {k.rsplit("/", 1)[-1]: v for k, v in bag.import_errors.items()},
    "heavy": sorted(m for m in sys.argv[2].split(",") if m in sys.modules),
}))
"""


def parse_in_fresh_process(configs: Path, tmp_path: Path) -> dict:
    env = {**os.environ, "AIRFLOW_MLOPS_CONFIGS": str(configs), "AIRFLOW_MLOPS_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", PARSE_SCRIPT, str(DAGS), ",".join(HEAVY)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    folder = tmp_path / "configs"
    shutil.copytree(DAGS / "configs", folder)
    return folder


def test_every_template_builds_every_example_pipeline_without_heavy_imports(configs, tmp_path):
    parsed = parse_in_fresh_process(configs, tmp_path)
    assert parsed["errors"] == {}
    expected = {f"{p}__{kind}" for p in ("breast_cancer", "wine", "diabetes") for kind in KINDS}
    # Only breast_cancer has a monitoring: section, so only it gets the fourth template's DAG.
    assert set(parsed["dag_ids"]) == expected | {"breast_cancer__monitor"}
    # Parsing must not pull in the ML stack: the scheduler parses these files all the time.
    assert parsed["heavy"] == []


def test_a_broken_pipeline_file_is_an_import_error_and_the_others_still_load(configs, tmp_path):
    broken = (configs / "wine.yaml").read_text().replace("flavor: sklearn", "flavor: sk-learn")
    (configs / "wine.yaml").write_text(broken)
    parsed = parse_in_fresh_process(configs, tmp_path)
    assert list(parsed["errors"]) == ["pipeline_files.py"]
    assert "wine.yaml: model.flavor: expected one of sklearn, xgboost, torch, got 'sk-learn'" in parsed["errors"]["pipeline_files.py"]
    assert "breast_cancer__retrain" in parsed["dag_ids"]
    assert "diabetes__batch_inference" in parsed["dag_ids"]
    assert not any(d.startswith("wine__") for d in parsed["dag_ids"])


def _bag(configs: Path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIGS", str(configs))
    return DagBag(dag_folder=str(DAGS))


def test_retraining_dag_shape_params_and_schedule(configs, monkeypatch):
    bag = _bag(configs, monkeypatch)
    dag = bag.dags["breast_cancer__retrain"]
    assert [t.task_id for t in dag.topological_sort()] == ["validate", "train", "evaluate", "approve", "promote"]
    params = dag.params.dump()
    assert params["training_data"] == "data/breast_cancer/train.parquet"
    assert params["approval"] == "none" and params["dry_run"] is False
    # @weekly and new training data both start a run.
    from airflow.sdk import AssetOrTimeSchedule

    assert isinstance(dag.timetable, AssetOrTimeSchedule) or "Asset" in type(dag.timetable).__name__
    # The move is announced by the alias history's watchers, never by the task itself (that would count it twice).
    assert dag.get_task("promote").outlets == [] and bag.dags["breast_cancer__rollback"].get_task("rollback").outlets == []
    announce = bag.dags["breast_cancer__announce"]
    assert announce.timetable.asset_condition.uri == "x-mlops://breast_cancer/aliases"
    diabetes = bag.dags["diabetes__retrain"]  # on_new_data: false -> time only
    assert "Asset" not in type(diabetes.timetable).__name__


def test_batch_inference_runs_when_the_champion_changes(configs, monkeypatch):
    dag = _bag(configs, monkeypatch).dags["breast_cancer__batch_inference"]
    order = [t.task_id for t in dag.topological_sort()]
    assert order[:5] == ["pin_model", "validate_input", "plan", "score", "commit"]
    # breast_cancer has a monitoring: section: both checks read the commit's output.
    assert set(order[5:]) == {"predict_drift", "estimate_performance"}
    assert all(dag.get_task(t).upstream_task_ids == {"commit"} for t in order[5:])
    assert [t.task_id for t in _bag(configs, monkeypatch).dags["wine__batch_inference"].topological_sort()][-1] == "commit"
    champion = dag.timetable.asset_condition
    assert champion.uri == "x-mlops://breast_cancer/champion"
    # The champion Asset is updated by a watcher that follows the promotion alias in the registry's history.
    [watcher] = champion.watchers
    assert watcher.trigger.serialize() == (
        "airflow_mlops.triggers.alias_history.AliasMovedTrigger",
        {"model": "breast_cancer", "stream": "breast_cancer.champion", "aliases": ["champion"],
         "registry_conn_id": "mlops_registry", "poll_interval": 5.0},
    )
    assert type(dag.get_task("score")).__name__ == "MappedOperator"


def test_drift_dag_starts_retraining_only_when_configured(configs, monkeypatch):
    bag = _bag(configs, monkeypatch)
    retrain_on_drift = bag.dags["breast_cancer__drift"]
    assert {t.task_id for t in retrain_on_drift.tasks} == {"check_drift", "drifted", "start_retraining"}
    assert retrain_on_drift.get_task("start_retraining").trigger_dag_id == "breast_cancer__retrain"
    alert_only = bag.dags["wine__drift"]
    assert {t.task_id for t in alert_only.tasks} == {"check_drift"}


def test_param_validation_rejects_a_bad_trigger_form(configs, monkeypatch):
    from airflow.sdk.exceptions import ParamValidationError

    dag = _bag(configs, monkeypatch).dags["breast_cancer__retrain"]
    with pytest.raises(ParamValidationError):
        dag.params.get_param("approval").resolve("maybe")
    with pytest.raises(ParamValidationError):
        dag.params.get_param("training_data").resolve("")
    assert dag.params.get_param("approval").resolve("required") == "required"


def test_a_pipeline_without_inference_input_or_drift_data_still_loads_unscheduled(configs, tmp_path):
    (configs / "minimal.yaml").write_text(
        "pipeline: minimal\n"
        "data: {train: data/minimal/train.parquet, target: y}\n"
        "model: {flavor: xgboost, task: regression}\n"
        "inference: {schedule: '@daily'}\n"
        "drift: {schedule: '@daily'}\n"
    )
    parsed = parse_in_fresh_process(configs, tmp_path)
    assert parsed["errors"] == {}
    assert {"minimal__batch_inference", "minimal__drift", "breast_cancer__batch_inference"} <= set(parsed["dag_ids"])


def test_unscheduled_when_there_is_nothing_to_score_or_check(configs, monkeypatch):
    (configs / "minimal.yaml").write_text(
        "pipeline: minimal\ndata: {train: t.parquet, target: y}\nmodel: {flavor: xgboost, task: regression}\n"
        "inference: {schedule: '@daily'}\ndrift: {schedule: '@daily'}\n"
    )
    bag = _bag(configs, monkeypatch)
    assert type(bag.dags["minimal__batch_inference"].timetable).__name__ == "NullTimetable"
    assert type(bag.dags["minimal__drift"].timetable).__name__ == "NullTimetable"
    # The trigger form asks for the input instead.
    assert bag.dags["minimal__batch_inference"].params.get_param("input").schema["minLength"] == 1


def test_the_monitor_without_labels_is_unscheduled_and_its_form_validates(configs, monkeypatch):
    from airflow.sdk.exceptions import ParamValidationError

    (configs / "minimal.yaml").write_text(
        "pipeline: minimal\ndata: {train: t.parquet, target: y, ids: [id]}\n"
        "model: {flavor: xgboost, task: regression}\nmonitoring: {schedule: '@daily', on_degradation: fail}\n"
    )
    bag = _bag(configs, monkeypatch)
    minimal = bag.dags["minimal__monitor"]
    assert type(minimal.timetable).__name__ == "NullTimetable"
    assert {t.task_id for t in minimal.tasks} == {"monitor"}
    with pytest.raises(ParamValidationError):
        minimal.params.get_param("labels").resolve("")
    with pytest.raises(ParamValidationError):
        minimal.params.get_param("window").resolve("7 days")
    assert minimal.params.get_param("window").resolve("36h") == "36h"
    scheduled = bag.dags["breast_cancer__monitor"]
    assert type(scheduled.timetable).__name__ == "AssetOrTimeSchedule"


def test_unpausing_a_scheduled_dag_waits_for_the_next_scheduled_time(configs, monkeypatch):
    """No surprise retraining: a scheduled DAG's first automated run is the next cron time after it is
    unpaused, never the most recent past one (Airflow's catchup=False with a past start date)."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIGS", str(configs))
    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    checked = []
    for dag_id, dag in bag.dags.items():
        timetable = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
        now = pendulum.now("UTC")
        first = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=TimeRestriction(
            earliest=dag.start_date, latest=None, catchup=dag.catchup))
        if first is not None:
            assert first.run_after > now, f"{dag_id} would run for {first.run_after} as soon as it is unpaused"
            checked.append(dag_id)
    assert any(d.endswith("__retrain") for d in checked) and any(d.endswith("__drift") for d in checked), checked
