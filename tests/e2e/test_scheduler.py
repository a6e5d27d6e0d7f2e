"""End to end on a real Airflow: scheduler, dag-processor, triggerer and api-server on 127.0.0.1.

Metadata and the model registry live in a real PostgreSQL; the registry is
reached through the `mlops_registry` connection like in production. A
retraining triggered through the REST API with a Param override promotes a
version whose lineage carries that run, and the champion Asset then starts
batch inference by itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from airflow_mlops.examples import materialise_examples
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage import open_store
from airflow_mlops.testing.airflow import ApiError, running_airflow
from airflow_mlops.testing.postgres import create_database

REPO = Path(__file__).resolve().parents[2]
PIPELINE = "breast_cancer"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def airflow(postgres_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    configs = root / "configs"
    configs.mkdir()
    config = yaml.safe_load((REPO / "dags" / "configs" / f"{PIPELINE}.yaml").read_text().replace("\n  on:", '\n  "on":'))
    # Only what the test triggers may run: no clock schedules on the shared 2-core machine.
    config["retraining"] = {"schedule": None, "on_new_data": False}
    config["inference"].update(schedule=None, chunk_rows=50)
    config["drift"]["schedule"] = None
    (configs / f"{PIPELINE}.yaml").write_text(yaml.safe_dump(config))
    dags = root / "dags"
    dags.mkdir()
    for template in ("retraining.py", "batch_inference.py", "pipeline_files.py"):
        shutil.copy(REPO / "dags" / template, dags / template)
    mlops_home = root / "mlops"
    materialise_examples(open_store(str(mlops_home)), (PIPELINE,))
    registry_url = create_database(postgres_server)
    ModelRegistry(registry_url, upgrade=True)
    env = {
        "AIRFLOW_MLOPS_HOME": str(mlops_home),
        "AIRFLOW_MLOPS_CONFIGS": str(configs),
        "AIRFLOW_CONN_MLOPS_REGISTRY": json.dumps({"conn_type": "mlops_registry", "extra": {"url": registry_url}}),
        "GX_ANALYTICS_ENABLED": "false",
    }
    metadata = f"sqlite:///{root / 'airflow.db'}"
    with running_airflow(dags, home=root / "airflow", sql_alchemy_conn=metadata, env=env,
                         parallelism=2) as instance:
        instance.registry_url = registry_url
        yield instance


def test_retraining_through_the_rest_api_promotes_and_starts_batch_inference(airflow):
    assert airflow.import_errors() == []
    airflow.wait_for_dag(f"{PIPELINE}__retrain")
    airflow.wait_for_dag(f"{PIPELINE}__batch_inference")

    with pytest.raises(ApiError) as refused:
        airflow.api("POST", f"/api/v2/dags/{PIPELINE}__retrain/dagRuns", {"logical_date": None}, user="viewer")
    assert refused.value.status == 403
    assert airflow.api("GET", f"/api/v2/dags/{PIPELINE}__retrain", user="viewer")["dag_id"] == f"{PIPELINE}__retrain"

    run_id = airflow.trigger(f"{PIPELINE}__retrain", {"model_params": {"n_estimators": 80}, "reason": "e2e test"})
    airflow.wait_for_run(f"{PIPELINE}__retrain", run_id, timeout=900)

    registry = ModelRegistry(airflow.registry_url)
    champion = registry.resolve(PIPELINE, "champion")
    assert (champion.version, champion.run_id, champion.dag_id) == (1, run_id, f"{PIPELINE}__retrain")
    assert champion.params["n_estimators"] == 80, "the Param override from the Trigger conf was used"
    event = registry.history(PIPELINE, "champion")[-1]
    assert (event.to_version, event.run_id, event.reason) == (1, run_id, "e2e test")

    # The promote task's champion Asset event starts batch inference with no trigger from us.
    deadline_runs = []
    import time

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not deadline_runs:
        deadline_runs = [r for r in airflow.dag_runs(f"{PIPELINE}__batch_inference") if r["run_type"] == "asset_triggered"]
        time.sleep(3)
    assert deadline_runs, f"no asset-triggered batch inference\n{airflow.diagnostics()}"
    scoring_run = deadline_runs[0]["dag_run_id"]
    airflow.wait_for_run(f"{PIPELINE}__batch_inference", scoring_run, timeout=900)
    store = open_store(airflow.env["AIRFLOW_MLOPS_HOME"])
    manifests = [u for u in store.list(f"predictions/{PIPELINE}") if u.endswith("_manifest.json")]
    assert len(manifests) == 1
    manifest = store.read_json(manifests[0])
    assert manifest["model"]["version"] == 1 and manifest["total_rows"] == 113
    assert len(manifest["parts"]) == 2, "two input parts were scored as two mapped chunks"
