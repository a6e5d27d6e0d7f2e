"""Whole DAG runs through Airflow's `dag.test()` on the example pipeline, embedded defaults.

These are the behaviours a team relies on: the first run promotes, a worse model
is stopped by the gate, `skip` and dry-run never promote, rollback moves the
champion back, a retried task never registers a second version, batch inference
commits every row once, and drift starts a retraining.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
PIPELINE = "breast_cancer"
WEAK = {"n_estimators": 2, "max_depth": 1, "learning_rate": 0.01}

pytestmark = pytest.mark.slow


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


def get_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def run_dag(dag_id: str, conf: dict | None = None):
    dag_run = get_dag(dag_id).test(run_conf=conf or {})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states


def registry():
    from airflow_mlops.registry import ModelRegistry

    return ModelRegistry()


def champion() -> int | None:
    from airflow_mlops.errors import NotFoundError

    try:
        return registry().resolve(PIPELINE, "champion").version
    except NotFoundError:
        return None


def extra_link(dag_run, task_id: str, link_class: str) -> str | None:
    """The URL Airflow stored for a task's extra link when the task finished (what the UI shows)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalar(select(XComModel).where(
            XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
            XComModel.task_id == task_id, XComModel.key == f"_link_{link_class}"))
        return XComModel.deserialize_value(row) if row is not None else None


def test_first_run_promotes_and_a_worse_model_is_stopped_by_the_gate(airflow_db, configs, example_data):
    first, states = run_dag(f"{PIPELINE}__retrain")
    assert first.state == "success", states
    assert champion() == 1
    # Extra links come from what each task persisted to XCom while it ran.
    assert extra_link(first, "train", "ModelVersionLink") == f"/mlops/models/{PIPELINE}/versions/1"
    assert extra_link(first, "promote", "ModelVersionLink") == f"/mlops/models/{PIPELINE}/versions/1"
    for task_id, report in (("validate", "validation.html"), ("evaluate", "evaluation.html")):
        link = extra_link(first, task_id, "ReportLink")
        assert link.startswith("/mlops/reports?uri=") and link.endswith(report), (task_id, link)
    version = registry().get_version(PIPELINE, 1)
    assert (version.dag_id, version.run_id, version.task_id) == (f"{PIPELINE}__retrain", first.run_id, "train")
    event = registry().history(PIPELINE, "champion")[-1]
    assert event.to_version == 1 and event.run_id == first.run_id
    # What a reviewer signs is stored with the evaluation: per-class results, calibration and importance.
    evaluation = registry().evaluations(PIPELINE, 1)[-1]
    assert [row["class"] for row in evaluation.diagnostics["per_class"]] == [0, 1]
    assert sum(map(sum, evaluation.diagnostics["confusion_matrix"]["matrix"])) == version.datasets["test"]["rows"]
    assert evaluation.diagnostics["calibration"]["brier"] < 0.1
    importance = evaluation.explanations["permutation"]
    assert importance["metric"] == "roc_auc" and importance["total_features"] == 30  # patient_id is an id
    assert evaluation.explanations["contributions"]["features"][0]["mean_abs"] > 0

    second, states = run_dag(f"{PIPELINE}__retrain", {"model_params": WEAK})
    assert second.state == "failed"
    assert states["evaluate"] == "failed"
    assert states["promote"] in ("upstream_failed", None)
    assert champion() == 1, "a failed gate must never promote"
    assert registry().get_version(PIPELINE, 2).params["n_estimators"] == 2


def test_a_failed_slice_gate_stops_the_promotion_naming_the_slice(airflow_db, configs, example_data):
    path = configs / f"{PIPELINE}.yaml"
    path.write_text(path.read_text().replace("  slices: []", "  slices: [{column: mean radius, bins: [0, 12, 15, 40], "
                                                              "min_size: 10, thresholds: {accuracy: {min: 0.999}}}]"))
    run, states = run_dag(f"{PIPELINE}__retrain")
    assert run.state == "failed" and states["evaluate"] == "failed", states
    assert champion() is None, "a failed slice gate must never promote"
    evaluation = registry().evaluations(PIPELINE, 1)[-1]
    failed = {key: values["failures"] for key, values in evaluation.slice_metrics.items() if "failures" in values}
    assert failed and all(key.startswith("mean radius in [") for key in failed)
    assert all(f.startswith(f"accuracy on {key} is ") and f.endswith(", below 0.999")
               for key, failures in failed.items() for f in failures)


def test_skip_policy_and_dry_run_never_promote(airflow_db, configs, example_data):
    text = (configs / f"{PIPELINE}.yaml").read_text()
    (configs / f"{PIPELINE}.yaml").write_text(
        text.replace("thresholds: {roc_auc: {min: 0.9}", "on_failure: skip\n  thresholds: {roc_auc: {min: 0.999}")
    )
    skipped, states = run_dag(f"{PIPELINE}__retrain")
    assert states["evaluate"] == "skipped" and states["promote"] == "skipped", states
    assert champion() is None

    dry, states = run_dag(f"{PIPELINE}__retrain", {"dry_run": True, "model_params": {"n_estimators": 50}})
    assert states["promote"] == "skipped" or states["evaluate"] == "skipped", states
    assert champion() is None


def test_rollback_moves_the_champion_back_with_the_reason(airflow_db, configs, example_data):
    run_dag(f"{PIPELINE}__retrain")
    reg = registry()
    v1 = reg.get_version(PIPELINE, 1)
    second = reg.register_version(
        PIPELINE,
        artifact_uri=v1.artifact_uri,
        artifact_sha256=v1.artifact_sha256,
        flavor=v1.flavor,
        task=v1.task,
        params=v1.params,
        metrics=v1.metrics,
        dag_id="manual",
        run_id="hand-promoted",
        task_id="none",
    )
    reg.set_alias(PIPELINE, "champion", second.version, expected_version=1, actor="alice", reason="hotfix")
    assert champion() == second.version

    rollback, states = run_dag(f"{PIPELINE}__rollback", {"reason": "v2 misbehaves in production"})
    assert rollback.state == "success", states
    assert champion() == 1
    last = registry().history(PIPELINE, "champion")[-1]
    assert (last.from_version, last.to_version, last.reason) == (second.version, 1, "v2 misbehaves in production")


def test_a_retried_train_task_returns_the_same_version(airflow_db, configs, example_data):
    dag = get_dag(f"{PIPELINE}__retrain")
    train = dag.get_task("train")
    train.data_uri, train.params_override = f"data/{PIPELINE}/train.parquet", {}  # what the templates render to
    pushed = {}
    context = {
        "dag_run": SimpleNamespace(dag_id=dag.dag_id, run_id="manual__retry", run_type="manual", triggering_user_name="bob"),
        "ti": SimpleNamespace(task_id="train", map_index=-1, xcom_push=lambda key, value: pushed.update({key: value})),
        "params": {},
    }
    first = train.execute(context)
    second = train.execute(context)  # what an Airflow retry does
    assert first["model"] == second["model"] == {"name": PIPELINE, "version": 1}
    assert pushed["mlops_model_version"] == {"name": PIPELINE, "version": 1}, "the Model version link's target"
    versions = registry().search_versions(PIPELINE)
    assert [v.version for v in versions] == [1]
    assert versions[0].created_by == "bob"


def test_batch_inference_scores_every_input_row_once_with_the_champion(airflow_db, configs, example_data):
    run_dag(f"{PIPELINE}__retrain")
    scored, states = run_dag(f"{PIPELINE}__batch_inference")
    assert scored.state == "success", states
    from airflow_mlops.data import read_table
    from airflow_mlops.inference import read_output
    from airflow_mlops.storage import open_store

    store = open_store()
    manifests = [u for u in store.list(f"predictions/{PIPELINE}") if u.endswith("_manifest.json")]
    assert len(manifests) == 1
    output = read_output(manifests[0].rsplit("/", 1)[0], store)
    inputs = read_table(f"data/{PIPELINE}/score/", store)
    assert len(output) == len(inputs)
    assert set(output["model_version"]) == {1}
    assert json.loads(Path(manifests[0].removeprefix("file://")).read_text())["model"]["version"] == 1


def test_drift_on_shifted_data_starts_a_retraining(airflow_db, configs, example_data):
    run_dag(f"{PIPELINE}__retrain")
    drift_run, states = run_dag(f"{PIPELINE}__drift", {"current": f"data/{PIPELINE}/shifted/"})
    assert drift_run.state == "success", states
    assert states["start_retraining"] == "success"
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == f"{PIPELINE}__retrain").all()
        reasons = [json.dumps(r.conf) for r in runs if r.conf]
    assert any("drift" in reason for reason in reasons)
    drift_records = registry().drift_records(PIPELINE)
    assert drift_records and not drift_records[-1].passed

    quiet_run, states = run_dag(f"{PIPELINE}__drift", {"current": f"data/{PIPELINE}/current/"})
    assert states["drifted"] == "success" and states["start_retraining"] == "skipped", states


LINEAGE_RUN = """
import sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
for dag_id in sys.argv[2:]:
    run = bag.dags[dag_id].test()
    assert run.state == "success", (dag_id, run.state)
"""


def test_openlineage_sees_data_model_and_predictions(airflow_db, configs, example_data, tmp_path):
    """The openlineage provider, with its file transport, on real `dag.test()` runs (own process, so the
    provider reads this transport from the start)."""
    import os

    events_file = tmp_path / "lineage.jsonl"
    env = {**os.environ, "AIRFLOW__OPENLINEAGE__NAMESPACE": "mlops-test",
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file), "append": True})}
    done = subprocess.run([sys.executable, "-c", LINEAGE_RUN, str(DAGS), f"{PIPELINE}__retrain", f"{PIPELINE}__batch_inference"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    # Task events only (a DAG run's own events are named by the DAG id alone).
    complete = {e["job"]["name"].split(".", 1)[1]: e for e in events
                if e["eventType"] == "COMPLETE" and e["job"]["name"].startswith(f"{PIPELINE}__") and "." in e["job"]["name"]}

    def names(event, side):
        return {(d["namespace"], d["name"]) for d in event[side]}

    home = str(example_data)
    version = registry().get_version(PIPELINE, 1)
    model = ("file", version.artifact_uri.removeprefix("file://"))
    train = complete["train"]
    assert ("file", f"{home}/data/{PIPELINE}/train.parquet") in names(train, "inputs")
    assert model in names(train, "outputs")
    facet = train["run"]["facets"]["mlops_modelVersion"]
    assert (facet["name"], facet["version"], facet["artifactSha256"]) == (PIPELINE, 1, version.artifact_sha256)
    assert facet["_schemaURL"].startswith("urn:airflow-mlops:openlineage:facets:")
    assert "validation_roc_auc" in train["run"]["facets"]["mlops_metrics"]["metrics"]

    assert complete["validate"]["run"]["facets"]["mlops_gate"]["passed"] is True
    evaluate = complete["evaluate"]
    assert model in names(evaluate, "inputs")
    assert any(n.endswith("test_predictions.parquet") for _, n in names(evaluate, "outputs"))
    gate = evaluate["run"]["facets"]["mlops_gate"]
    assert (gate["gate"], gate["passed"]) == ("evaluation", True)
    measured = evaluate["run"]["facets"]["mlops_metrics"]
    assert measured["split"] == "test" and measured["metrics"]["roc_auc"] == registry().evaluations(PIPELINE, 1)[-1].metrics["roc_auc"]
    alias = complete["promote"]["run"]["facets"]["mlops_alias"]
    assert (alias["alias"], alias["toVersion"], alias.get("fromVersion")) == ("champion", 1, None)

    commit = complete["commit"]
    assert model in names(commit, "inputs")
    assert any(n.startswith(f"{home}/data/{PIPELINE}/score") for _, n in names(commit, "inputs"))
    [(_, output)] = names(commit, "outputs")
    assert output.startswith(f"{home}/predictions/{PIPELINE}/"), output
    assert commit["run"]["facets"]["mlops_modelVersion"]["version"] == 1
    assert all(n.endswith(".parquet") for _, n in names(complete["score"], "outputs"))
