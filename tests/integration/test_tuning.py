"""Hyperparameter tuning: an Optuna study per run in the registry's database, trials in batches per task.

What a team relies on: the tuned model beats the file's params on the validation split
(each flavor, bundled data), trials never see the test split, a retried batch adds no
trial, a bad search space says so, the study lives beside the registry on SQLite and
PostgreSQL, and the version records the study and shows its trials.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from airflow_mlops import steps
from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.errors import ConfigError, TrainingError
from airflow_mlops.examples import materialise_examples
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage import open_store

CASES = {
    "sklearn": {
        "pipeline": "wine", "target": "cultivar", "task": "multiclass_classification",
        "estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 20, "max_depth": 2},
        "metric": "log_loss",
        "space": {
            "max_depth": {"type": "int", "low": 2, "high": 12},
            "n_estimators": {"type": "int", "low": 20, "high": 200, "step": 20},
            "max_features": {"type": "categorical", "choices": ["sqrt", "log2", None]},
        },
    },
    "xgboost": {
        "pipeline": "breast_cancer", "target": "target", "task": "binary_classification",
        "params": {"n_estimators": 60, "max_depth": 1, "learning_rate": 0.03}, "metric": "log_loss",
        "space": {
            "max_depth": {"type": "int", "low": 1, "high": 6},
            "learning_rate": {"type": "float", "low": 0.03, "high": 0.5, "log": True},
            "min_child_weight": {"type": "float", "low": 0.5, "high": 8.0},
        },
    },
    "torch": {
        "pipeline": "diabetes", "target": "progression", "task": "regression",
        "params": {"epochs": 30, "batch_size": 32, "hidden_sizes": [16], "learning_rate": 0.0005, "patience": 30},
        "metric": "rmse",
        "space": {
            "learning_rate": {"type": "float", "low": 0.0005, "high": 0.05, "log": True},
            "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.3},
        },
    },
}


def pipeline(flavor: str, **tuning):
    case = CASES[flavor]
    return parse_pipeline_config({
        "pipeline": case["pipeline"],
        "data": {"train": f"data/{case['pipeline']}/train.parquet", "target": case["target"],
                 "ids": ["patient_id"] if case["pipeline"] == "breast_cancer" else []},
        "model": {"flavor": flavor, "task": case["task"], "estimator": case.get("estimator"),
                  "params": case["params"], "seed": 5},
        "evaluation": {"primary_metric": case["metric"]},
        "tuning": {"enabled": True, "n_trials": 12, "parallelism": 3, "pruner": "median", "seed": 11,
                   "space": case["space"], **tuning},
    })


@pytest.fixture
def store(mlops_home: Path):
    store = open_store(str(mlops_home))
    materialise_examples(store, ("breast_cancer", "wine", "diabetes"))
    return store


def plan_for(config, store, registry, run_id: str = "manual__1", n_trials: int | None = None) -> dict:
    """The plan as the next tasks see it in XCom (batches) and on the train task's `tuning` (study, datasets)."""
    return steps.plan_tuning(config, store, registry, data_uri=config.data.train,
                             n_trials=n_trials or config.tuning.n_trials, params_override=None,
                             prefix=f"pipelines/{config.pipeline}/runs/{run_id}/tune.plan", run_id=run_id).to_dict()


def train(config, store, registry, run_id: str, tuning: dict | None = None):
    out = steps.train_and_register(config, store, registry, data_uri=config.data.train,
                                   prefix=f"pipelines/{config.pipeline}/runs/{run_id}/train",
                                   lineage={"dag_id": f"{config.pipeline}__retrain", "run_id": run_id, "task_id": "train"},
                                   tuning=tuning)
    return registry.get_version(config.pipeline, out.model.version)


def study_trials(registry: ModelRegistry, study: str):
    import optuna

    return optuna.load_study(study_name=study, storage=registry.url).get_trials()


@pytest.mark.slow
@pytest.mark.parametrize("flavor", list(CASES))
def test_the_tuned_model_beats_the_files_params_on_the_validation_split(flavor, store, monkeypatch):
    config = pipeline(flavor)
    registry = ModelRegistry()
    metric = config.tuning.metric
    untuned = train(config, store, registry, "manual__untuned")

    import airflow_mlops.data as data

    read, original = [], data.read_table
    monkeypatch.setattr(data, "read_table", lambda uri, *a, **k: read.append(uri) or original(uri, *a, **k))
    planned = plan_for(config, store, registry)
    read.clear()
    outcomes = [steps.run_tuning_batch(config, store, registry, batch=batch, worker="here") for batch in planned["batches"]]
    assert sorted(read) == sorted([planned["datasets"]["train"]["uri"], planned["datasets"]["validation"]["uri"]] * 3), \
        "trials read the train and validation splits only, never the test split"
    monkeypatch.setattr(data, "read_table", original)
    tuned = train(config, store, registry, "manual__1", tuning={"study": planned["study"], "datasets": planned["datasets"]})

    assert tuned.datasets == planned["datasets"], "the final fit uses the split the trials were scored on"
    assert tuned.datasets["validation"]["fingerprint"] == untuned.datasets["validation"]["fingerprint"]
    better = (lambda a, b: a > b) if metric in ("roc_auc", "accuracy", "r2") else (lambda a, b: a < b)
    assert better(tuned.metrics[f"validation_{metric}"], untuned.metrics[f"validation_{metric}"]), (
        tuned.metrics, untuned.metrics)

    lineage = tuned.tags["tuning"]
    assert lineage["study"] == planned["study"] == f"{config.pipeline}/manual__1"
    assert lineage["n_trials"] == 12 == sum(o.completed + o.pruned + o.failed for o in outcomes)
    assert lineage["metric"] == metric and lineage["completed"] >= 2
    assert {k: tuned.params[k] for k in lineage["best_params"]} == lineage["best_params"]
    assert lineage["best_value"] == pytest.approx(tuned.metrics[f"validation_{metric}"], rel=1e-6), \
        "the best trial's score is the registered model's validation score: same split, params and seed"
    assert set(lineage["importance"]) <= set(config.tuning.space) and lineage["importance"]
    trials = study_trials(registry, planned["study"])
    assert sorted(t.user_attrs["slot"] for t in trials) == list(range(12))
    if flavor != "sklearn":
        assert all(t.intermediate_values for t in trials), "xgboost and torch trials report per-round losses"


def test_a_retried_batch_reuses_finished_trials_and_resumes_the_running_one(store, monkeypatch):
    config = pipeline("xgboost", n_trials=6, parallelism=2)
    registry = ModelRegistry()
    planned = plan_for(config, store, registry)
    batch = planned["batches"][0]
    assert [b["index"] for b in planned["batches"]] == [0, 1]

    import airflow_mlops.training.base as base

    fit, calls = base.fit_model, []

    def worker_dies_in_the_second_trial(*args, **kwargs):
        calls.append(kwargs["params_override"])
        if len(calls) == 2:
            raise ConnectionError("the worker lost its connection")
        return fit(*args, **kwargs)

    monkeypatch.setattr(base, "fit_model", worker_dies_in_the_second_trial)
    with pytest.raises(ConnectionError):
        steps.run_tuning_batch(config, store, registry, batch=batch)
    monkeypatch.setattr(base, "fit_model", fit)
    left = {t.user_attrs["slot"]: t for t in study_trials(registry, planned["study"])}
    assert {slot: t.state.name for slot, t in left.items()} == {0: "COMPLETE", 2: "RUNNING"}

    retried = steps.run_tuning_batch(config, store, registry, batch=batch)
    assert (retried.reused, retried.completed + retried.pruned) == (1, 2)
    trials = {t.user_attrs["slot"]: t for t in study_trials(registry, planned["study"])}
    assert trials[2].number == left[2].number and trials[2].params == left[2].params, \
        "the running trial is resumed with its own params, not replaced"
    again = steps.run_tuning_batch(config, store, registry, batch=batch)
    assert (again.reused, again.completed, again.pruned) == (3, 0, 0)
    steps.run_tuning_batch(config, store, registry, batch=planned["batches"][1])
    trials = study_trials(registry, planned["study"])
    assert len(trials) == 6 and sorted(t.user_attrs["slot"] for t in trials) == list(range(6))
    assert all(t.state.is_finished() for t in trials)

    replanned = plan_for(config, store, registry, n_trials=50)
    assert replanned == planned, "a retried plan keeps the study's plan"


def test_params_the_trainer_refuses_fail_their_trials_and_training_says_why(store):
    config = pipeline("sklearn", n_trials=3, parallelism=1,
                      space={"max_features": {"type": "categorical", "choices": ["most"]}})
    registry = ModelRegistry()
    planned = plan_for(config, store, registry)
    outcome = steps.run_tuning_batch(config, store, registry, batch=planned["batches"][0])
    assert (outcome.failed, outcome.completed) == (3, 0)
    with pytest.raises(TrainingError, match=r"no completed trial \(3 started, 3 failed.*the first error: .*max_features"):
        train(config, store, registry, "manual__1", tuning={"study": planned["study"], "datasets": planned["datasets"]})


def test_no_trial_starts_after_the_timeout(store):
    from airflow_mlops.tuning import TuningPlan

    config = pipeline("xgboost", n_trials=4, parallelism=2, timeout=3600)
    registry = ModelRegistry()
    planned = plan_for(config, store, registry)
    plan = TuningPlan.from_dict(planned["batches"][0]["plan"])
    assert datetime.fromisoformat(plan.deadline) > datetime.now(timezone.utc) + timedelta(minutes=59)
    expired = dataclasses.replace(plan, deadline=(datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat())
    outcome = steps.run_tuning_batch(config, store, registry, batch={"plan": expired.to_dict(), "index": 1})
    assert (outcome.not_started, outcome.trials) == (2, [])
    assert study_trials(registry, planned["study"]) == []


def test_the_study_lives_in_the_registrys_postgresql_database(store, postgres_url):
    import sqlalchemy

    registry = ModelRegistry(postgres_url, upgrade=True)
    config = pipeline("xgboost", n_trials=4, parallelism=2)
    planned = plan_for(config, store, registry)
    for batch in planned["batches"]:
        steps.run_tuning_batch(config, store, registry, batch=batch, worker=f"w{batch['index']}")
    version = train(config, store, registry, "manual__1", tuning={"study": planned["study"], "datasets": planned["datasets"]})
    assert version.tags["tuning"]["n_trials"] == 4
    tables = set(sqlalchemy.inspect(sqlalchemy.create_engine(postgres_url)).get_table_names())
    assert {"studies", "trials", "trial_params", "alembic_version", "mlops_model_versions", "mlops_alembic_version"} <= tables
    assert {t.user_attrs["worker"] for t in study_trials(registry, planned["study"])} == {"w0", "w1"}
    assert ModelRegistry(postgres_url).get_version(config.pipeline, version.version).version == version.version, \
        "Optuna's own tables leave the registry's schema check alone"


def test_the_version_page_shows_the_study_importance_and_trials(store):
    from airflow_mlops.ui.views import RegistryViews

    config = pipeline("xgboost", n_trials=4, parallelism=1, pruner="none")
    registry = ModelRegistry()
    planned = plan_for(config, store, registry)
    steps.run_tuning_batch(config, store, registry, batch=planned["batches"][0], worker="worker-7")
    version = train(config, store, registry, "manual__1", tuning={"study": planned["study"], "datasets": planned["datasets"]})
    page = RegistryViews(registry, store, {config.pipeline: config}).version(config.pipeline, version.version)
    tuning = page["tuning"]
    assert "tuning" not in page["tags"]
    assert tuning["summary"]["study"] == planned["study"] and tuning["summary"]["n_trials"] == 4
    assert [t["number"] for t in tuning["trials"]] == [0, 1, 2, 3]
    assert {t["worker"] for t in tuning["trials"]} == {"worker-7"} and {t["state"] for t in tuning["trials"]} == {"complete"}
    assert all(t["cpu_seconds"] > 0 for t in tuning["trials"]), "each trial records its CPU-seconds"
    assert page["cost_text"] and "CPU-s" in page["cost_text"]
    shares = [row["share"] for row in tuning["importance"]]
    assert {row["param"] for row in tuning["importance"]} == set(config.tuning.space)
    assert shares == sorted(shares, reverse=True) and sum(shares) == pytest.approx(1.0, abs=0.01)

    from jinja2 import Environment, FileSystemLoader

    from airflow_mlops.ui.app import TEMPLATES

    html = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True).get_template("version.html").render(
        name=config.pipeline, version={**page, "aliases": []}, prefix="/mlops", user="viewer")
    assert html.count('<tr data-state="complete"') == 4 and 'id="tuning"' in html
    assert f'data-param="{tuning["importance"][0]["param"]}"' in html
    assert html.count('<td class="cpu-seconds">') == 4
    assert f'href="/mlops/models/breast_cancer/versions/{version.version}/card"' in html


@pytest.mark.parametrize(("tuning", "message"), [
    ({"space": {}}, "tuning.space"),
    ({"space": {"eta": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}}, "a log scale needs low above 0"),
    ({"space": {"depth": {"type": "int", "low": 9, "high": 2}}}, "low 9 is above high 2"),
    ({"space": {"depth": {"type": "integer", "low": 1, "high": 2}}}, "tuning.space.depth: input tag 'integer'.*expected tags: 'int', 'float', 'categorical'"),
    ({"space": {"depth": {"type": "int", "low": 1, "high": 9}}, "metric": "r2"}, "tuning.metric: 'r2' is not one of"),
    ({"space": {"depth": {"type": "int", "low": 1, "high": 9}}, "parallelism": 2000}, "less than or equal to 128"),
    ({"space": {"depth": {"type": "int", "low": 1, "high": 9}}, "n_trials": "20"}, "valid integer"),
])
def test_a_bad_tuning_section_names_the_field(tuning, message):
    with pytest.raises((ConfigError, ValidationError), match=message):
        parse_pipeline_config({
            "pipeline": "p", "data": {"train": "t.parquet", "target": "y"},
            "model": {"flavor": "xgboost", "task": "binary_classification"}, "tuning": tuning,
        })


def test_tuning_needs_a_validation_split_and_is_off_by_default():
    base = {"pipeline": "p", "data": {"train": "t.parquet", "target": "y"},
            "model": {"flavor": "xgboost", "task": "binary_classification"}}
    assert parse_pipeline_config(base).tuning is None
    space = {"space": {"max_depth": {"type": "int", "low": 1, "high": 9}}}
    config = parse_pipeline_config({**base, "tuning": space})
    assert config.tuning.enabled is False and config.tuning.metric == "roc_auc"
    with pytest.raises(ConfigError, match="trials are scored on the validation split, but data.split.validation is 0"):
        parse_pipeline_config({**base, "data": {**base["data"], "split": {"validation": 0.0}}, "tuning": space})


TUNING_SECTION = """
tuning:
  enabled: false
  n_trials: 10
  parallelism: 2
  pruner: none
  space:
    max_depth: {type: int, low: 2, high: 6}
    learning_rate: {type: float, low: 0.05, high: 0.3, log: true}
"""


@pytest.fixture
def tuned_dags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlops_home: Path):
    """breast_cancer's pipeline file with a tuning: section that is off unless a run turns it on."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "breast_cancer.yaml").write_text((repo / "dags/configs/breast_cancer.yaml").read_text() + TUNING_SECTION)
    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIGS", str(configs))
    materialise_examples(open_store(str(mlops_home)), ("breast_cancer",))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(repo / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.mark.slow
def test_the_retrain_dag_tunes_in_mapped_batches_when_a_run_turns_tuning_on(tuned_dags):
    dag = tuned_dags.dags["breast_cancer__retrain"]
    order = [t.task_id for t in dag.topological_sort()]
    assert order[:4] == ["validate", "tune.plan", "tune.trials", "train"]
    params = dag.params.dump()
    assert (params["tuning"], params["n_trials"]) == (False, 10)

    def run(conf):
        # A fresh parse per run, as a worker has: dag.test() renders templates onto the operators in place.
        from airflow.dag_processing.dagbag import DagBag

        dag_run = DagBag(dag_folder=tuned_dags.dag_folder).dags[dag.dag_id].test(run_conf=conf)
        states: dict[str, list[str]] = {}
        for ti in dag_run.get_task_instances():
            states.setdefault(ti.task_id, []).append(ti.state)
        return dag_run, states

    tuned_run, states = run({"tuning": True, "n_trials": 5})
    assert tuned_run.state == "success", states
    assert states["tune.plan"] == ["success"] and states["tune.trials"] == ["success", "success"]
    registry = ModelRegistry()
    tuned = registry.find_version_by_run("breast_cancer", dag.dag_id, tuned_run.run_id, "train")
    lineage = tuned.tags["tuning"]
    assert lineage["study"] == f"breast_cancer/{tuned_run.run_id}" and lineage["n_trials"] == 5
    assert {k: tuned.params[k] for k in ("max_depth", "learning_rate")} == lineage["best_params"]

    plain_run, states = run({})
    # Not the run's state: the gate compares this version with the tuned champion, and which of the two
    # scores better on the test split is the data's business, not the tuning switch's.
    assert states["tune.plan"] == ["skipped"] and states["train"] == ["success"], states
    plain = registry.find_version_by_run("breast_cancer", dag.dag_id, plain_run.run_id, "train")
    assert "tuning" not in plain.tags and plain.params["max_depth"] == 4, "the pipeline file's params"


@pytest.mark.slow
@pytest.mark.parametrize("flavor", ["xgboost", "torch"])
def test_the_median_pruner_stops_unpromising_trials_on_their_validation_loss(flavor, store):
    wide = {"xgboost": {"learning_rate": {"type": "float", "low": 0.0005, "high": 0.5, "log": True}},
            "torch": {"learning_rate": {"type": "float", "low": 0.00001, "high": 0.05, "log": True}}}[flavor]
    config = pipeline(flavor, n_trials=14, parallelism=1, space=wide)
    registry = ModelRegistry()
    planned = plan_for(config, store, registry)
    outcome = steps.run_tuning_batch(config, store, registry, batch=planned["batches"][0])
    assert outcome.pruned >= 1 and outcome.completed >= 5, outcome
    rounds = config.model.params.get("n_estimators") or config.model.params["epochs"]
    trials = study_trials(registry, planned["study"])
    for trial in trials:
        assert set(trial.intermediate_values) <= {0, 1, 3, 7, 15, 31, 63}, "reported at rounds 1, 2, 4, 8, ..."
        if trial.state.name == "PRUNED":
            assert max(trial.intermediate_values) < rounds - 1, "a pruned trial stopped before its last round"
            assert trial.value is None or trial.value == trial.intermediate_values[max(trial.intermediate_values)]
