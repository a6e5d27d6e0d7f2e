"""The registry's behaviour on both engines: SQLite (embedded) and a real PostgreSQL server."""

from __future__ import annotations

import json
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from airflow_mlops.errors import ConflictError, NotFoundError, RegistryError
from airflow_mlops.registry import UNCHECKED, ModelRegistry

SHA = "ab" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url = request.getfixturevalue("postgres_url")
    ModelRegistry(url, upgrade=True)
    return url


@pytest.fixture
def registry(registry_url) -> ModelRegistry:
    return ModelRegistry(registry_url)


def register(registry: ModelRegistry, name: str = "churn", **lineage) -> int:
    return registry.register_version(
        name, artifact_uri=f"s3://b/{name}/model", artifact_sha256=SHA, flavor="xgboost",
        task="binary_classification", params={"max_depth": 4}, metrics={"roc_auc": 0.9},
        datasets={"train": {"uri": "s3://b/train.parquet", "fingerprint": "f" * 64}}, **lineage,
    ).version


def test_versions_number_from_one_and_keep_their_lineage(registry):
    assert [register(registry) for _ in range(3)] == [1, 2, 3]
    version = registry.register_version(
        "churn", artifact_uri="s3://b/m", artifact_sha256=SHA, flavor="torch", task="regression",
        dag_id="churn__retrain", run_id="manual__1", task_id="train", created_by="alice",
        code_version="abc123", library_versions={"torch": "2.13.0"},
    )
    got = registry.get_version("churn", version.version)
    assert (got.dag_id, got.run_id, got.task_id, got.created_by) == ("churn__retrain", "manual__1", "train", "alice")
    assert (got.code_version, got.library_versions, got.status) == ("abc123", {"torch": "2.13.0"}, "active")
    assert got.created_at.tzinfo is not None
    assert registry.get_version("churn", 1).datasets["train"]["fingerprint"] == "f" * 64


def test_a_retry_of_the_same_task_run_gets_the_same_version(registry):
    lineage = {"dag_id": "d", "run_id": "r1", "task_id": "train"}
    first = register(registry, **lineage)
    assert register(registry, **lineage) == first
    assert register(registry, dag_id="d", run_id="r2", task_id="train") == first + 1
    assert [v.version for v in registry.search_versions("churn")] == [1, 2]
    assert registry.find_version_by_run("churn", "d", "r1", "train").version == first
    assert registry.find_version_by_run("churn", "d", "r9", "train") is None


def test_alias_compare_and_set_and_history(registry):
    for _ in range(3):
        register(registry)
    registry.set_alias("churn", "champion", 1, expected_version=None, actor="ci", reason="first", run_id="r1", dag_id="d")
    with pytest.raises(ConflictError, match="points at v1, not nothing"):
        registry.set_alias("churn", "champion", 2, expected_version=None, actor="x", reason="race")
    registry.set_alias("churn", "champion", 2, expected_version=1, actor="bob", reason="better")
    with pytest.raises(ConflictError):
        registry.set_alias("churn", "champion", 3, expected_version=1, actor="late", reason="stale read")
    assert registry.resolve("churn", "champion").version == 2
    events = registry.history("churn", "champion")
    assert [(e.from_version, e.to_version, e.actor, e.reason) for e in events] == [
        (None, 1, "ci", "first"), (1, 2, "bob", "better"),
    ]
    assert (events[0].dag_id, events[0].run_id) == ("d", "r1")


def test_rollback_undoes_changes_in_order(registry):
    for _ in range(3):
        register(registry)
    assert "champion" not in registry.rollback_targets("churn")  # never set
    for version in (1, 2, 3):
        registry.set_alias("churn", "champion", version, actor="ci", reason=f"v{version}")
        assert registry.rollback_targets("churn")["champion"] == (version - 1 or None)
    assert registry.rollback("churn", "champion", reason="v3 is broken", actor="oncall").version == 2
    assert registry.rollback_targets("churn")["champion"] == 1
    assert registry.rollback("churn", "champion", reason="v2 too").version == 1
    assert registry.rollback_targets("churn")["champion"] is None
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("churn", "champion", reason="again")
    last = registry.history("churn", "champion")[-1]
    assert (last.kind, last.from_version, last.to_version, last.reason) == ("rollback", 2, 1, "v2 too")
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.rollback("churn", "champion", reason=" ")


def test_search_carries_aliases_and_filters(registry):
    for _ in range(3):
        register(registry)
    registry.set_version_tags("churn", 2, {"team": "growth"})
    registry.set_alias("churn", "champion", 2, reason="r")
    registry.set_alias("churn", "challenger", 3, reason="r")
    found = registry.search_versions("churn", tags={"team": "growth"})
    assert [(v.version, v.aliases) for v in found] == [(2, ["champion"])]
    assert [v.version for v in registry.search_versions("churn", alias="challenger")] == [3]
    assert [v.version for v in registry.search_versions("churn", min_metrics={"roc_auc": 0.95})] == []
    assert len(registry.search_versions("churn", max_metrics={"roc_auc": 0.95})) == 3
    assert registry.list_models()[0].aliases == {"challenger": 3, "champion": 2}


def test_search_filters_by_typed_tags_and_metrics_and_pages_in_the_database(registry):
    for i in range(12):
        registry.register_version(
            "churn", artifact_uri=f"s3://b/churn/{i}", artifact_sha256=SHA, flavor="xgboost",
            task="binary_classification", params={}, metrics={"roc_auc": 0.80 + i / 100, "note": "n/a" if i == 5 else 1.0},
            datasets={}, tags={"team": "growth" if i % 2 else "core", "rank": i, "canary": i == 3, "code": str(i)},
        )
    registry.set_alias("churn", "champion", 7, reason="r")
    page = registry.search_versions("churn", newest_first=True, limit=5, offset=2)
    assert [v.version for v in page] == [10, 9, 8, 7, 6] and page[3].aliases == ["champion"]
    assert [v.version for v in registry.search_versions("churn", limit=3)] == [1, 2, 3]
    assert [v.version for v in registry.search_versions("churn", tags={"team": "growth"}, limit=2, offset=1)] == [4, 6]
    # Tag values compare as their own type: the number 3 is not the string "3", nor a boolean.
    assert [v.version for v in registry.search_versions("churn", tags={"rank": 3})] == [4]
    assert [v.version for v in registry.search_versions("churn", tags={"code": "3"})] == [4]
    assert registry.search_versions("churn", tags={"code": 3}) == []
    assert [v.version for v in registry.search_versions("churn", tags={"canary": True})] == [4]
    # A metric that is not a number never passes a threshold (and never breaks the query).
    assert [v.version for v in registry.search_versions("churn", min_metrics={"roc_auc": 0.905})] == [12]
    assert [v.version for v in registry.search_versions("churn", max_metrics={"note": 2.0})] == [
        v for v in range(1, 13) if v != 6]
    with pytest.raises(RegistryError, match="limit must be at least 1"):
        registry.search_versions("churn", limit=0)


def test_archive_is_refused_while_an_alias_points_at_the_version(registry):
    register(registry)
    register(registry)
    registry.set_alias("churn", "champion", 1, reason="r")
    with pytest.raises(RegistryError, match="holds the alias champion"):
        registry.archive_version("churn", 1)
    assert registry.archive_version("churn", 2).status == "archived"
    with pytest.raises(RegistryError, match="archived"):
        registry.set_alias("churn", "champion", 2, reason="r")
    assert [v.version for v in registry.search_versions("churn", status="active")] == [1]
    event = registry.delete_alias("churn", "champion", reason="retired")
    assert (event.kind, event.from_version, event.to_version) == ("delete", 1, None)
    with pytest.raises(NotFoundError):
        registry.resolve("churn", "champion")


def test_unknown_names_raise_not_found(registry):
    with pytest.raises(NotFoundError, match="no registered model named 'nope'"):
        registry.get_version("nope", 1)
    register(registry)
    with pytest.raises(NotFoundError, match="has no version 7"):
        registry.get_version("churn", 7)
    with pytest.raises(NotFoundError, match="has no alias 'champion'"):
        registry.resolve("churn", "champion")


def test_evaluations_and_drift_records(registry):
    register(registry)
    registry.record_evaluation("churn", 1, metrics={"roc_auc": 0.91}, passed=True, dataset_fingerprint="t" * 64,
                               slice_metrics={"country=fr": {"roc_auc": 0.8}}, compared_to_version=None,
                               report_uri="s3://b/r.html", run_id="r1")
    registry.record_drift("churn", version=1, drift_share=0.4, drifted_columns=["age"], passed=True,
                          reference_fingerprint="a" * 64, current_fingerprint="b" * 64)
    evaluation = registry.evaluations("churn", 1)[0]
    assert evaluation.slice_metrics == {"country=fr": {"roc_auc": 0.8}} and evaluation.passed
    drift = registry.drift_records("churn")[0]
    assert (drift.drift_share, drift.drifted_columns, drift.version) == (0.4, ["age"], 1)


def _race(url: str, name: str, versions: list[int], start: threading.Barrier | None) -> list[str]:
    registry = ModelRegistry(url)
    outcomes = []
    for version in versions:
        if start is not None:
            start.wait()
        current = registry.resolve(name, "champion").version
        try:
            registry.set_alias(name, "champion", version, expected_version=current, actor=f"w{version}", reason="race")
            outcomes.append("ok")
        except ConflictError:
            outcomes.append("conflict")
    return outcomes


def _assert_unbroken_chain(registry: ModelRegistry, successes: int) -> None:
    events = registry.history("race", "champion")
    assert len(events) == successes + 1
    for before, after in zip(events, events[1:], strict=False):
        assert after.from_version == before.to_version, [(e.from_version, e.to_version) for e in events]
    assert registry.resolve("race", "champion").version == events[-1].to_version


def _prepare_race(registry: ModelRegistry, versions: int) -> None:
    for _ in range(versions):
        register(registry, "race")
    registry.set_alias("race", "champion", 1, reason="start")


def test_32_threads_promoting_at_once_lose_no_update(registry, registry_url):
    _prepare_race(registry, 33)
    barrier = threading.Barrier(32)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda v: _race(registry_url, "race", [v], barrier)[0], range(2, 34)))
    assert set(results) <= {"ok", "conflict"} and "ok" in results
    _assert_unbroken_chain(registry, results.count("ok"))


def _process_worker(url: str, version: int, queue: multiprocessing.Queue) -> None:
    try:
        queue.put(_race(url, "race", [version], None)[0])
    except Exception as exc:  # reported to the parent
        queue.put(f"error: {exc!r}")


def test_32_processes_promoting_at_once_on_postgresql(postgres_url):
    registry = ModelRegistry(postgres_url, upgrade=True)
    _prepare_race(registry, 33)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_process_worker, args=(postgres_url, v, queue)) for v in range(2, 34)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert set(results) <= {"ok", "conflict"}, results
    _assert_unbroken_chain(registry, results.count("ok"))


def test_concurrent_registrations_never_share_a_number(registry, registry_url):
    def work(i: int) -> int:
        return register(ModelRegistry(registry_url), "busy", dag_id="d", run_id=f"r{i % 8}", task_id="t")

    with ThreadPoolExecutor(16) as pool:
        numbers = list(pool.map(work, range(32)))
    assert sorted(set(numbers)) == list(range(1, 9)), "8 distinct runs -> exactly 8 versions, no gaps"


def test_a_production_database_is_not_migrated_silently(postgres_url):
    with pytest.raises(RegistryError, match="airflow-mlops db upgrade"):
        ModelRegistry(postgres_url)


def test_cli_promote_history_and_json(registry_url, capsys):
    from airflow_mlops.cli import main

    registry = ModelRegistry(registry_url)
    register(registry)
    register(registry)
    assert main(["registry", "promote", "churn", "1", "--alias", "champion", "--reason", "first", "--db", registry_url, "--actor", "amy"]) == 0
    assert main(["registry", "promote", "churn", "2", "--alias", "champion", "--reason", "better", "--db", registry_url, "--expected-version", "1"]) == 0
    assert main(["registry", "rollback", "churn", "--alias", "champion", "--reason", "oops", "--db", registry_url]) == 0
    capsys.readouterr()
    assert main(["registry", "history", "churn", "champion", "--db", registry_url, "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [(e["kind"], e["to_version"]) for e in history] == [("set", 1), ("set", 2), ("rollback", 1)]
    assert history[0]["actor"] == "amy"
    registry.record_evaluation("churn", 2, dataset_fingerprint="f", metrics={"roc_auc": 0.91}, slice_metrics={},
                               compared_to_version=1, passed=True, report_uri=None, run_id="r2")
    assert main(["registry", "versions", "churn", "--db", registry_url]) == 0
    table = capsys.readouterr().out
    assert "v1" in table and "champion" in table and "test metrics" in table
    # The test-split metrics the gate decided on, not the version's validation scores.
    assert "roc_auc=0.91" in table and "not evaluated" in table
    assert main(["registry", "promote", "churn", "2", "--alias", "champion", "--reason", "x", "--db", registry_url, "--expected-version", "2"]) == 1
    assert "points at v1, not v2" in capsys.readouterr().err


def test_embedded_registry_upgrades_itself_under_the_artifact_root(mlops_home):
    registry = ModelRegistry()
    assert registry.url == f"sqlite:///{mlops_home / 'registry.db'}"
    assert register(registry) == 1
    assert UNCHECKED is not None
