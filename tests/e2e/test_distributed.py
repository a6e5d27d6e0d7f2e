"""The DAGs on Airflow's CeleryExecutor with two workers, the way a team runs them on several machines.

Everything is on 127.0.0.1 but shares only what separate machines would:
PostgreSQL (Airflow metadata, Celery results and the model registry, in separate
databases), Redis (the Celery broker) and S3 (a moto server) for every artifact.
Each worker has its own HOME and TMPDIR and its own Airflow hostname
(`worker-1`, `worker-2`). Retraining tunes hyperparameters in mapped trial tasks on
both workers into one Optuna study in the registry database, then promotes a model;
the champion Asset starts batch inference, whose chunks are mapped across both workers.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from airflow_mlops.data import read_table
from airflow_mlops.examples import materialise_examples
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage import open_store
from airflow_mlops.testing.airflow import running_airflow
from airflow_mlops.testing.postgres import create_database
from airflow_mlops.testing.s3 import CREDENTIALS, REGION, s3_client_for

REPO = Path(__file__).resolve().parents[2]
PIPELINE = "breast_cancer"
ROWS, ROW_GROUP = 480, 40  # 12 row groups -> 12 mapped chunks
TRIALS, TRIAL_TASKS = 12, 6

pytestmark = [pytest.mark.slow, pytest.mark.s3, pytest.mark.postgres]


def _scoring_input(store) -> pd.DataFrame:
    """The example's score rows, repeated to ROWS rows with a unique id, in row groups of ROW_GROUP."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_table("data/breast_cancer/score/", store)
    frame = pd.concat([rows] * (ROWS // len(rows) + 1), ignore_index=True).iloc[:ROWS]
    frame.insert(0, "row_id", range(ROWS))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=ROW_GROUP)
    store.write_bytes("data/breast_cancer/many/part-0.parquet", sink.getvalue().to_pybytes())
    return frame


@pytest.fixture(scope="module")
def cluster(postgres_server, redis_url, s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    client = s3_client_for(s3_server)
    client.create_bucket(Bucket="mlops")
    store = open_store("s3://mlops/artifacts", s3_client=client)
    materialise_examples(store, (PIPELINE,))
    expected = _scoring_input(store)

    configs = root / "configs"
    configs.mkdir()
    config = yaml.safe_load((REPO / "dags" / "configs" / f"{PIPELINE}.yaml").read_text().replace("\n  on:", '\n  "on":'))
    config["data"]["ids"] = ["row_id"]
    config["retraining"] = {"schedule": None, "on_new_data": False}
    config["inference"].update(input="data/breast_cancer/many/", schedule=None, chunk_rows=ROW_GROUP)
    config["drift"]["schedule"] = None
    config["tuning"] = {
        "enabled": True, "n_trials": TRIALS, "parallelism": TRIAL_TASKS, "pruner": "none",
        "space": {"max_depth": {"type": "int", "low": 2, "high": 6},
                  "learning_rate": {"type": "float", "low": 0.05, "high": 0.3, "log": True}},
    }
    (configs / f"{PIPELINE}.yaml").write_text(yaml.safe_dump(config))
    dags = root / "dags"
    dags.mkdir()
    for template in ("retraining.py", "batch_inference.py", "pipeline_files.py"):
        shutil.copy(REPO / "dags" / template, dags / template)

    metadata_url = create_database(postgres_server)
    registry_url = create_database(postgres_server)
    ModelRegistry(registry_url, upgrade=True)
    env = {
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW_MLOPS_HOME": "s3://mlops/artifacts",
        "AIRFLOW_MLOPS_CONFIGS": str(configs),
        "AIRFLOW_CONN_MLOPS_REGISTRY": json.dumps({"conn_type": "mlops_registry", "extra": {"url": registry_url}}),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
            "conn_type": "aws", "login": CREDENTIALS["aws_access_key_id"],
            "password": CREDENTIALS["aws_secret_access_key"],
            "extra": {"endpoint_url": s3_server, "region_name": REGION},
        }),
        "GX_ANALYTICS_ENABLED": "false",
    }
    with running_airflow(dags, home=root / "airflow", sql_alchemy_conn=metadata_url, env=env,
                         executor="CeleryExecutor", components=("api-server", "scheduler", "dag-processor", "triggerer"),
                         celery_workers=2, worker_concurrency=1, parallelism=4) as instance:
        instance.registry_url = registry_url
        instance.store = store
        instance.expected = expected
        yield instance


def test_retraining_and_mapped_batch_inference_run_across_two_celery_workers(cluster):
    assert cluster.import_errors() == []
    for kind in ("retrain", "batch_inference"):
        cluster.wait_for_dag(f"{PIPELINE}__{kind}")
    assert cluster.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert cluster.env["AIRFLOW_MLOPS_HOME"].startswith("s3://")

    run_id = cluster.trigger(f"{PIPELINE}__retrain", {"reason": "distributed test"})
    cluster.wait_for_run(f"{PIPELINE}__retrain", run_id, timeout=900)
    registry = ModelRegistry(cluster.registry_url)
    champion = registry.resolve(PIPELINE, "champion")
    assert (champion.version, champion.run_id) == (1, run_id)
    assert champion.artifact_uri.startswith("s3://mlops/artifacts/"), "the model went to S3, not a worker's disk"

    # Tuning: the mapped trial tasks ran on both workers, into one study in the registry's PostgreSQL.
    import optuna

    trial_tasks = [ti for ti in cluster.task_instances(f"{PIPELINE}__retrain", run_id) if ti["task_id"] == "tune.trials"]
    assert len(trial_tasks) == TRIAL_TASKS and {ti["state"] for ti in trial_tasks} == {"success"}
    assert {ti["hostname"] for ti in trial_tasks} == {"worker-1", "worker-2"}
    study = optuna.load_study(study_name=f"{PIPELINE}/{run_id}", storage=cluster.registry_url)
    trials = study.get_trials()
    assert sorted(t.user_attrs["slot"] for t in trials) == list(range(TRIALS)), "each slot once, no duplicates"
    assert {t.user_attrs["worker"].split(":")[0] for t in trials} == {"worker-1", "worker-2"}
    assert champion.tags["tuning"]["study"] == study.study_name and champion.tags["tuning"]["n_trials"] == TRIALS
    assert {k: champion.params[k] for k in study.best_params} == study.best_params

    deadline, runs = time.monotonic() + 300, []
    while time.monotonic() < deadline and not runs:
        runs = [r for r in cluster.dag_runs(f"{PIPELINE}__batch_inference") if r["run_type"] == "asset_triggered"]
        time.sleep(2)
    assert runs, f"the champion Asset did not start batch inference\n{cluster.diagnostics()}"
    scoring_run = runs[0]["dag_run_id"]
    cluster.wait_for_run(f"{PIPELINE}__batch_inference", scoring_run, timeout=900)

    instances = cluster.task_instances(f"{PIPELINE}__batch_inference", scoring_run)
    mapped = [ti for ti in instances if ti["task_id"] == "score"]
    assert len(mapped) == ROWS // ROW_GROUP >= 8
    assert {ti["state"] for ti in mapped} == {"success"}
    # Every task ran on one of the two workers, and both took some.
    hosts = {ti["hostname"] for ti in instances}
    assert hosts == {"worker-1", "worker-2"}, hosts

    manifests = [u for u in cluster.store.list(f"predictions/{PIPELINE}") if u.endswith("_manifest.json")]
    assert len(manifests) == 1
    manifest = cluster.store.read_json(manifests[0])
    assert len(manifest["parts"]) == ROWS // ROW_GROUP and manifest["total_rows"] == ROWS
    assert {part["worker"].split(":")[0] for part in manifest["parts"]} == {"worker-1", "worker-2"}
    assert all(part["uri"].startswith("s3://mlops/artifacts/") for part in manifest["parts"])

    scored = pd.concat([read_table(part["uri"], cluster.store) for part in manifest["parts"]], ignore_index=True)
    assert len(scored) == ROWS and scored["row_id"].is_unique, "every input row exactly once"
    assert set(scored["row_id"]) == set(cluster.expected["row_id"])
    assert set(scored["model_version"]) == {1}

    # Nothing was handed between tasks through a local file: the workers' own temp folders hold
    # no leftovers, and the only local files are Airflow's logs.
    for worker in ("worker-1", "worker-2"):
        leftovers = [p for p in (cluster.home / "workers" / worker / "tmp").rglob("*") if p.is_file()]
        assert leftovers == [], leftovers
