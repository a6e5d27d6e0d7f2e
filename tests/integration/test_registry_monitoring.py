"""Monitoring tables of the registry (migration 0002) on both engines: SQLite and a real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from airflow_mlops.errors import NotFoundError, RegistryError
from airflow_mlops.registry import ModelRegistry, migrate

SHA = "ab" * 32
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def registry(empty_url) -> ModelRegistry:
    registry = ModelRegistry(empty_url, upgrade=True)
    for _ in range(2):
        registry.register_version("churn", artifact_uri="s3://b/m", artifact_sha256=SHA, flavor="sklearn",
                                  task="binary_classification")
    return registry


def _engine(url: str):
    from airflow_mlops.registry.engine import registry_engine

    return registry_engine(url)


def _old_model_version_and_evaluation(connection) -> None:
    """Rows written before an upgrade: model `churn`, its v1 and one evaluation (id 1)."""
    connection.execute(text(
        "INSERT INTO mlops_models (name, description, tags, created_at) VALUES ('churn', '', '{}', :at)"
    ), {"at": T0})
    connection.execute(text(
        "INSERT INTO mlops_model_versions (model_id, version, artifact_uri, artifact_sha256, flavor, task, "
        "params, metrics, datasets, library_versions, created_at, status, tags) VALUES "
        "(1, 1, 's3://b/m', :sha, 'sklearn', 'binary_classification', '{}', '{}', '{}', '{}', :at, "
        "'active', '{}')"
    ), {"sha": SHA, "at": T0})
    connection.execute(text(
        "INSERT INTO mlops_evaluations (model_id, version, metrics, slice_metrics, passed, at) "
        "VALUES (1, 1, '{\"roc_auc\": 0.9}', '{}', :passed, :at)"
    ), {"at": T0, "passed": True})


def test_migration_0002_keeps_existing_rows(empty_url):
    engine = create_engine(empty_url)
    try:
        with engine.begin() as connection:
            from alembic import command

            command.upgrade(migrate._config(connection), "0001")
        assert migrate.current_revision(engine) == "0001"
        with engine.begin() as connection:
            _old_model_version_and_evaluation(connection)
            connection.execute(text(
                "INSERT INTO mlops_drift_records (model_id, version, drift_share, drifted_columns, passed, run_id, at) "
                "VALUES (1, 1, 0.25, '[\"age\"]', :passed, 'old-run', :at)"
            ), {"at": T0, "passed": True})
        assert migrate.upgrade(engine) == migrate.head_revision()
    finally:
        engine.dispose()
    registry = ModelRegistry(empty_url)
    [drift] = registry.drift_records("churn")
    assert (drift.kind, drift.drift_share, drift.drifted_columns, drift.run_id) == ("data", 0.25, ["age"], "old-run")
    assert registry.drift_records("churn", kind="prediction") == []
    [evaluation] = registry.evaluations("churn", 1)
    assert evaluation.metrics == {"roc_auc": 0.9}
    assert (evaluation.predictions_uri, evaluation.predictions_sha256) == (None, None)
    assert registry.scoring_runs("churn") == [] and registry.performance_records("churn") == []


def test_migration_0002_downgrades_and_upgrades_again(registry, empty_url):
    registry.record_drift("churn", version=1, drift_share=0.1, drifted_columns=[], passed=True, kind="prediction")
    engine = create_engine(empty_url)
    try:
        with engine.begin() as connection:
            from alembic import command

            command.downgrade(migrate._config(connection), "0001")
        assert migrate.current_revision(engine) == "0001"
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM mlops_drift_records")).scalar() == 1
        assert migrate.upgrade(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_the_orm_models_and_the_migrations_describe_the_same_schema(registry):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from airflow_mlops.registry.models import Base

    with _engine(registry.url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [d for d in compare_metadata(context, Base.metadata) if "mlops_alembic_version" not in str(d)]
    assert differences == []


def test_evaluations_keep_their_stored_test_predictions(registry):
    registry.record_evaluation("churn", 1, metrics={"roc_auc": 0.9}, passed=True, run_id="r1",
                               predictions_uri="s3://b/p.parquet", predictions_sha256="c" * 64)
    registry.record_evaluation("churn", 2, metrics={"roc_auc": 0.8}, passed=False)
    first, second = registry.evaluations("churn")
    assert (first.predictions_uri, first.predictions_sha256) == ("s3://b/p.parquet", "c" * 64)
    assert second.predictions_uri is None
    assert first.to_dict()["predictions_uri"] == "s3://b/p.parquet"


def test_migration_0005_adds_evaluation_details_that_older_rows_read_as_empty(empty_url):
    engine = create_engine(empty_url)
    try:
        with engine.begin() as connection:
            from alembic import command

            command.upgrade(migrate._config(connection), "0003")
            _old_model_version_and_evaluation(connection)
        assert migrate.upgrade(engine) == migrate.head_revision() == "0005"
    finally:
        engine.dispose()
    registry = ModelRegistry(empty_url)
    [old] = registry.evaluations("churn", 1)
    assert (old.fairness, old.diagnostics, old.explanations) == ({}, {}, {})
    details = {"fairness": {"sex": {"metrics": {"demographic_parity_difference": 0.3}}},
               "diagnostics": {"confusion_matrix": {"labels": [0, 1], "matrix": [[5, 1], [2, 7]]}},
               "explanations": {"permutation": {"features": [{"rank": 1, "feature": "age", "mean": 0.1}]}}}
    registry.record_evaluation("churn", 1, metrics={"roc_auc": 0.8}, passed=False, **details)
    new = registry.evaluations("churn", 1)[-1]
    assert {key: getattr(new, key) for key in details} == details
    assert registry.latest_evaluations({("churn", 1)})[("churn", 1)].explanations == details["explanations"]


def test_drift_records_carry_their_kind(registry):
    registry.record_drift("churn", version=1, drift_share=0.2, drifted_columns=[], passed=True, run_id="d1")
    registry.record_drift("churn", version=1, drift_share=1.0, drifted_columns=["prediction"], passed=False,
                          run_id="b1", kind="prediction")
    assert [d.kind for d in registry.drift_records("churn")] == ["data", "prediction"]
    [prediction] = registry.drift_records("churn", kind="prediction")
    assert (prediction.run_id, prediction.passed) == ("b1", False)
    with pytest.raises(RegistryError, match="drift kind 'labels'"):
        registry.record_drift("churn", drift_share=0.0, drifted_columns=[], passed=True, kind="labels")


def _scoring(registry: ModelRegistry, run_id: str, at: datetime, version: int = 1, **changes):
    values = {"dag_id": "churn__batch_inference", "run_id": run_id, "manifest_uri": f"s3://b/out/{run_id}/_manifest.json",
              "output_prefix": f"s3://b/out/{run_id}", "rows": 1000, "seconds": 2.5, "input_fingerprint": "f" * 64,
              "committed_at": at, **changes}
    return registry.record_scoring_run("churn", version, **values)


def test_a_retried_commit_updates_its_scoring_run(registry):
    first = _scoring(registry, "run-1", T0)
    again = _scoring(registry, "run-1", T0 + timedelta(minutes=5), rows=1200)
    assert (first.run_id, first.rows, again.rows) == ("run-1", 1000, 1200)
    [only] = registry.scoring_runs("churn")
    assert (only.rows, only.committed_at, only.seconds) == (1200, T0 + timedelta(minutes=5), 2.5)
    # The same run id of another DAG is another scoring run.
    _scoring(registry, "run-1", T0, dag_id="other__batch_inference")
    assert len(registry.scoring_runs("churn")) == 2


def test_scoring_runs_newest_first_since_and_limit(registry):
    for day in range(5):
        _scoring(registry, f"run-{day}", T0 + timedelta(days=day), version=1 + day % 2)
    assert [r.run_id for r in registry.scoring_runs("churn")] == [f"run-{d}" for d in (4, 3, 2, 1, 0)]
    assert [r.run_id for r in registry.scoring_runs("churn", since=T0 + timedelta(days=3))] == ["run-4", "run-3"]
    assert [r.run_id for r in registry.scoring_runs("churn", limit=2)] == ["run-4", "run-3"]
    assert [r.version for r in registry.scoring_runs("churn")] == [1, 2, 1, 2, 1]
    with pytest.raises(NotFoundError, match="no version 9"):
        _scoring(registry, "run-9", T0, version=9)


def _performance(registry: ModelRegistry, **changes):
    values = {"kind": "realized", "dag_id": "churn__monitor", "run_id": "m1", "rows": 100, "labelled_rows": 80,
              "coverage": 0.8, "metrics": {"roc_auc": 0.91}, "labels_fingerprint": "l" * 64,
              "period_start": T0, "period_end": T0 + timedelta(days=1), **changes}
    return registry.record_performance("churn", values.pop("version", 1), **values)


def test_a_retried_monitor_run_replaces_its_performance_record(registry):
    first = _performance(registry, passed=None, summary="too few labels")
    again = _performance(registry, labelled_rows=90, coverage=0.9, passed=True, summary="passed")
    assert first.passed is None and again.passed is True
    [only] = registry.performance_records("churn")
    assert (only.labelled_rows, only.coverage, only.summary, only.passed) == (90, 0.9, "passed", True)
    assert only.period_end == T0 + timedelta(days=1) and only.scoring_run_id is None
    # Another version, scoring run, kind or run is another record.
    _performance(registry, version=2)
    _performance(registry, scoring_run_id="b1")
    _performance(registry, kind="estimated", scoring_run_id="b1", labelled_rows=None, coverage=None,
                 bands={"roc_auc": [0.85, 0.95]})
    _performance(registry, run_id="m2")
    assert len(registry.performance_records("churn")) == 5
    # Without a run id nothing identifies a retry: each call is a new record.
    _performance(registry, run_id=None)
    _performance(registry, run_id=None)
    assert len(registry.performance_records("churn")) == 7


def test_performance_records_oldest_first_filtered_and_limited(registry):
    for number in range(4):
        _performance(registry, run_id=f"m{number}", version=1 + number % 2, passed=[None, True, False, None][number],
                     notes=[f"note {number}"])
    _performance(registry, kind="estimated", run_id="b9", scoring_run_id="b9", bands={"roc_auc": [0.8, 0.9]})
    records = registry.performance_records("churn")
    assert [r.run_id for r in records] == ["m0", "m1", "m2", "m3", "b9"]
    assert [r.passed for r in records[:4]] == [None, True, False, None]
    assert records[0].notes == ["note 0"] and records[-1].bands == {"roc_auc": [0.8, 0.9]}
    assert [r.run_id for r in registry.performance_records("churn", kind="realized", version=2)] == ["m1", "m3"]
    assert [r.run_id for r in registry.performance_records("churn", limit=2)] == ["m3", "b9"]
    assert records[0].to_dict()["period_start"] == T0.isoformat()
    with pytest.raises(RegistryError, match="performance kind 'guessed'"):
        _performance(registry, kind="guessed")
