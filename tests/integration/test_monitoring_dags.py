"""Monitoring through Airflow's `dag.test()`: the monitor DAG and batch inference's post-commit tasks.

The example pipeline (breast_cancer) has a `monitoring:` section. One flow covers
what a team relies on: a batch commit records its scoring run, its estimated
performance and its prediction drift (with the batch's run id); labels arriving
for the scored batch give a realized record with a verdict; a later batch whose
outcomes changed degrades the champion and starts `<pipeline>__retrain` with the
degradation summary as its reason. A pipeline without `monitoring:` gets no
monitor DAG and the batch DAG it always had.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
PIPELINE = "breast_cancer"

pytestmark = pytest.mark.slow

BATCH_TASKS = {"pin_model", "validate_input", "plan", "score", "commit"}


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """`dag.test()` needs a migrated metadata DB (SQLite in the suite's AIRFLOW_HOME)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir()
    shutil.copy(DAGS / "configs" / f"{PIPELINE}.yaml", folder)
    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIGS", str(folder))
    return folder


@pytest.fixture
def example_data(mlops_home: Path) -> Path:
    from airflow_mlops.examples import materialise_examples
    from airflow_mlops.storage import open_store

    materialise_examples(open_store(str(mlops_home)), (PIPELINE,))
    return mlops_home


def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    return bag


def run_dag(dag_id: str, conf: dict | None = None):
    dag_run = dag_bag().dags[dag_id].test(run_conf=conf or {})
    return dag_run, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def registry():
    from airflow_mlops.registry import ModelRegistry

    return ModelRegistry()


def _labels_arrive(home: Path, outcomes: str, name: str) -> None:
    folder = home / "data" / PIPELINE / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(home / "data" / PIPELINE / "outcomes" / f"{outcomes}.parquet", folder / f"{name}.parquet")


def _retraining_reasons() -> list[str]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == f"{PIPELINE}__retrain").all()
        return [str((r.conf or {}).get("reason", "")) for r in runs]


def test_batch_commit_records_then_labels_give_realized_performance_and_degradation_retrains(
    airflow_db, configs, example_data
):
    run_dag(f"{PIPELINE}__retrain")
    reg = registry()
    assert reg.evaluations(PIPELINE, 1)[-1].predictions_uri, "evaluation stores the test predictions"

    batch, states = run_dag(f"{PIPELINE}__batch_inference")
    assert batch.state == "success", states
    assert states["predict_drift"] == "success" and states["estimate_performance"] == "success", states
    [scoring] = reg.scoring_runs(PIPELINE)
    assert (scoring.run_id, scoring.dag_id, scoring.version) == (batch.run_id, f"{PIPELINE}__batch_inference", 1)
    assert scoring.manifest_uri.endswith("_manifest.json") and scoring.rows > 0
    [estimated] = reg.performance_records(PIPELINE, kind="estimated")
    assert (estimated.version, estimated.scoring_run_id, estimated.run_id) == (1, batch.run_id, batch.run_id)
    assert estimated.metrics and estimated.passed is None
    [prediction_drift] = reg.drift_records(PIPELINE, kind="prediction")
    assert (prediction_drift.run_id, prediction_drift.version) == (batch.run_id, 1)

    # The outcomes of the scored rows arrive: realized performance with a verdict, no retraining.
    _labels_arrive(example_data, "score", "first")
    monitor, states = run_dag(f"{PIPELINE}__monitor")
    assert monitor.state == "success", states
    assert states["degraded"] == "success" and states["start_retraining"] == "skipped", states
    [realized] = reg.performance_records(PIPELINE, kind="realized")
    assert (realized.version, realized.run_id, realized.dag_id) == (1, monitor.run_id, f"{PIPELINE}__monitor")
    assert realized.labelled_rows == scoring.rows and realized.passed is True, realized
    assert realized.metrics["roc_auc"] > 0.9 and realized.report_uri

    # A later batch whose outcomes all changed: the champion degrades and retraining starts with the reason.
    later, states = run_dag(f"{PIPELINE}__batch_inference", {"input": f"data/{PIPELINE}/later/"})
    assert later.state == "success", states
    assert [r.run_id for r in reg.scoring_runs(PIPELINE)] == [later.run_id, batch.run_id]
    assert [r.scoring_run_id for r in reg.performance_records(PIPELINE, kind="estimated")] == [batch.run_id, later.run_id]
    _labels_arrive(example_data, "later", "second")
    before = len(_retraining_reasons())
    degraded, states = run_dag(f"{PIPELINE}__monitor")
    assert degraded.state == "success", states
    assert states["start_retraining"] == "success", states
    reasons = _retraining_reasons()
    assert len(reasons) == before + 1
    assert any(reason.startswith("degradation: ") for reason in reasons), reasons
    last = reg.performance_records(PIPELINE, kind="realized")[-1]
    assert last.run_id == degraded.run_id and last.passed is False
    assert last.labelled_rows == 2 * scoring.rows
    assert last.summary and last.summary in json.dumps(reasons)


def test_a_pipeline_without_monitoring_gets_no_monitor_dag_and_its_usual_batch_dag(airflow_db, configs):
    path = configs / f"{PIPELINE}.yaml"
    text = path.read_text()
    start = text.index("monitoring:\n")
    end = text.index("alerts:\n")
    path.write_text(text[:start] + text[end:])
    bag = dag_bag()
    assert f"{PIPELINE}__monitor" not in bag.dags
    assert {t.task_id for t in bag.dags[f"{PIPELINE}__batch_inference"].tasks} == BATCH_TASKS


def test_the_monitor_dag_follows_the_pipeline_file(airflow_db, configs):
    bag = dag_bag()
    monitor = bag.dags[f"{PIPELINE}__monitor"]
    assert {t.task_id for t in monitor.tasks} == {"monitor", "degraded", "start_retraining"}
    assert type(monitor.timetable).__name__ == "AssetOrTimeSchedule"  # monitoring.schedule or new labels
    assert f"{PIPELINE}.labels" in repr(monitor.timetable.asset_condition)
    assert monitor.params["labels"] == f"data/{PIPELINE}/labels/" and monitor.params["window"] == "7d"
    assert {t.task_id for t in bag.dags[f"{PIPELINE}__batch_inference"].tasks} == {
        *BATCH_TASKS, "predict_drift", "estimate_performance"}

    path = configs / f"{PIPELINE}.yaml"
    text = path.read_text()
    path.write_text(text.replace("on_degradation: retrain", "on_degradation: alert").replace(
        "estimate: true", "estimate: false").replace("labels: data/breast_cancer/labels/", "labels: null"))
    bag = dag_bag()
    monitor = bag.dags[f"{PIPELINE}__monitor"]
    assert {t.task_id for t in monitor.tasks} == {"monitor"}
    assert type(monitor.timetable).__name__ == "NullTimetable", "without labels the monitor runs only when triggered"
    assert {t.task_id for t in bag.dags[f"{PIPELINE}__batch_inference"].tasks} == {*BATCH_TASKS, "predict_drift"}


def test_versions_without_stored_test_predictions_are_skipped_with_a_reason(mlops_home):
    from airflow_mlops.config import load_pipeline_config
    from airflow_mlops.steps import (
        check_batch_prediction_drift,
        estimate_batch_performance,
        window_timedelta,
    )
    from airflow_mlops.storage import open_store

    config = load_pipeline_config(DAGS / "configs" / f"{PIPELINE}.yaml")
    reg, store = registry(), open_store()
    reg.register_version(PIPELINE, artifact_uri="m", artifact_sha256="a" * 64, flavor="xgboost",
                         task="binary_classification")
    reg.record_evaluation(PIPELINE, 1, metrics={"roc_auc": 0.99}, passed=True)  # before monitoring existed
    estimate = estimate_batch_performance(config, store, reg, manifest_uri="x/_manifest.json", version=1,
                                          run_id="b1", dag_id="d")
    assert not estimate.estimated and "v1 has no stored test predictions" in estimate.summary
    assert estimate.summary.startswith("not estimated: ")
    drift = check_batch_prediction_drift(config, store, reg, manifest_uri="x/_manifest.json", version=1,
                                         run_id="b1", report_path="r.html")
    assert not drift.checked and drift.gate is None and "no stored test predictions" in drift.summary
    assert reg.performance_records(PIPELINE) == [] and reg.drift_records(PIPELINE) == []
    assert json.loads(json.dumps(estimate.to_dict()))["estimated"] is False
    assert window_timedelta("36h").total_seconds() == 36 * 3600 and window_timedelta("2w").days == 14
