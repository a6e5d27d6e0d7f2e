"""The reusable Airflow harness on a real Airflow 3: REST API, Params, XCom, Asset scheduling, roles.

One instance (api-server, scheduler, dag-processor, triggerer; LocalExecutor on
SQLite) serves the whole module, with the two DAGs in `dags_harness/`.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

from airflow_mlops.testing.airflow import ApiError, running_airflow

DAGS = Path(__file__).resolve().parent / "dags_harness"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    started = time.monotonic()
    with running_airflow(DAGS, home=tmp_path_factory.mktemp("harness") / "airflow", parallelism=2) as instance:
        print(f"\nAirflow healthy after {time.monotonic() - started:.1f} s")
        trees = [psutil.Process(p.pid) for p in instance.processes.values()]
        pids = {p.pid for tree in trees for p in (tree, *tree.children(recursive=True))}
        yield instance
        stopping = time.monotonic()
    print(f"\nAirflow stopped in {time.monotonic() - stopping:.1f} s, {time.monotonic() - started:.1f} s in all")
    left = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not left, f"Airflow processes still running after the harness stopped: {left}"


def test_param_override_runs_and_its_asset_event_starts_the_consumer(airflow):
    started = time.monotonic()
    assert airflow.import_errors() == []
    assert airflow.wait_for_dag("harness_consumer")["is_paused"] is False
    airflow.wait_for_dag("harness_producer")

    run_id = airflow.trigger("harness_producer", conf={"n": 21})
    assert airflow.wait_for_run("harness_producer", run_id, timeout=120) == "success"
    assert airflow.xcom("harness_producer", run_id, "double") == 42
    print(f"\nproducer run succeeded {time.monotonic() - started:.1f} s after the test started")

    consumer_run = airflow.wait_for_run_created("harness_consumer", "asset_triggered", timeout=120)
    assert airflow.wait_for_run("harness_consumer", consumer_run, timeout=120) == "success"
    assert airflow.xcom("harness_consumer", consumer_run, "consume") == 1, "one triggering asset event"
    assert [run["dag_run_id"] for run in airflow.dag_runs("harness_consumer")] == [consumer_run]
    print(f"asset-triggered consumer run succeeded {time.monotonic() - started:.1f} s after the test started")


def test_a_failed_run_raises_with_the_task_log(airflow):
    airflow.wait_for_dag("harness_producer")
    logical_date = datetime(2024, 1, 2, tzinfo=timezone.utc)
    run_id = airflow.trigger("harness_producer", conf={"n": -1}, logical_date=logical_date)
    run = airflow.api("GET", f"/api/v2/dags/harness_producer/dagRuns/{run_id}")
    assert datetime.fromisoformat(run["logical_date"].replace("Z", "+00:00")) == logical_date
    with pytest.raises(AssertionError) as failure:
        airflow.wait_for_run("harness_producer", run_id, timeout=120)
    report = str(failure.value)
    assert f"harness_producer run {run_id}: failed" in report
    assert "double[-1]: failed" in report
    assert "n must not be negative, got -1" in report, "the task's own log is in the message"
    assert "=== airflow scheduler" in report


def test_viewer_reads_dags_but_cannot_trigger(airflow):
    airflow.wait_for_dag("harness_producer")
    assert airflow.api("GET", "/api/v2/dags/harness_producer", user="viewer")["dag_id"] == "harness_producer"
    with pytest.raises(ApiError) as refused:
        airflow.api("POST", "/api/v2/dags/harness_producer/dagRuns", {"logical_date": None}, user="viewer")
    assert refused.value.status == 403
    with pytest.raises(ApiError) as wrong_password:
        airflow.token("viewer", password="not-the-password")
    assert wrong_password.value.status == 401
