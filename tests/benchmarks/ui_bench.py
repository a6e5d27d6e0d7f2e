"""How fast the registry pages answer with 100,000 versions of one model, on SQLite and PostgreSQL.

    .venv/bin/python tests/benchmarks/ui_bench.py [--versions 100000] [--repeats 10]

Per engine, two registries: the baseline, where the model `big` has 100
versions, and the scale one, where it has --versions (bulk-loaded as in
registry_bench.py, every version evaluated, the newest few failing their
gate); both hold 20 other models, drift checks, batch-inference runs and alias
moves. The models page (/mlops/models) and the model page (/mlops/models/big)
are requested from the registry's FastAPI app in-process (TestClient, with the
Airflow user check answered by a logged-in admin): routing, the views' queries
and the Jinja templates, all of the real page code. Each figure is the median
of --repeats requests; target < 200 ms, and the ratio to the baseline shows
whether a page grows with the number of versions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

TARGET_MS = 200
BASELINE_VERSIONS = 100
OTHER_MODELS = 20
FAILED_NEWEST = 3  # the newest versions fail their gate: the promote default has to look past them
PIPELINE = """\
pipeline: big
data: {train: data/big/train.parquet, target: label}
model: {flavor: xgboost, task: binary_classification}
evaluation: {primary_metric: roc_auc, thresholds: {roc_auc: {min: 0.6}}}
"""


def populate(url: str, versions: int) -> None:
    """`big` with `versions` versions and an evaluation each, inserted in bulk (set-up, not timed); other models,
    drift checks, batch runs and alias moves through the registry API."""
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.registry.models import EvaluationRow, ModelVersionRow

    registry = ModelRegistry(url, upgrade=True)
    registry.register_version("big", artifact_uri="s3://bucket/big/1", artifact_sha256="0" * 64, flavor="xgboost",
                              task="binary_classification", params={}, metrics={"validation_roc_auc": 0.5})
    now = datetime.now(timezone.utc)
    with registry.engine.begin() as connection:
        big_id = connection.exec_driver_sql("SELECT id FROM mlops_models WHERE name = 'big'").scalar_one()
        for start in range(1, versions + 1, 10_000):
            numbers = range(start, min(start + 10_000, versions + 1))
            connection.execute(ModelVersionRow.__table__.insert(), [
                {"model_id": big_id, "version": v, "artifact_uri": f"s3://bucket/big/{v}", "artifact_sha256": "0" * 64,
                 "flavor": "xgboost", "task": "binary_classification", "params": {"max_depth": v % 8, "eta": 0.1},
                 "metrics": {"validation_roc_auc": 0.5 + (v % 1000) / 2000}, "code_version": "bench",
                 "datasets": {"train": {"uri": "data/big/train.parquet", "fingerprint": f"{v:064d}"}},
                 "library_versions": {"xgboost": "2.1"}, "dag_id": "big__retrain", "run_id": f"run-{v}",
                 "task_id": "train", "created_by": "bench", "created_at": now, "status": "active", "tags": {}}
                for v in numbers if v > 1
            ])
            connection.execute(EvaluationRow.__table__.insert(), [
                {"model_id": big_id, "version": v, "dataset_fingerprint": "f" * 64,
                 "metrics": {"roc_auc": 0.5 + (v % 1000) / 2000, "accuracy": 0.8},
                 "slice_metrics": {"plan=basic": {"rows": 40, "roc_auc": 0.7}}, "compared_to_version": None,
                 "passed": v <= versions - FAILED_NEWEST, "report_uri": None, "run_id": f"run-{v}", "at": now}
                for v in numbers
            ])
    for move in range(50):
        registry.set_alias("big", "champion", versions - FAILED_NEWEST - move % 10, reason="bench", actor="bench")
    for day in range(60):
        registry.record_drift("big", version=versions, drift_share=(day % 10) / 10, drifted_columns=["a"],
                              passed=day % 10 < 5, kind="data" if day % 3 else "prediction")
    for run in range(30):
        registry.record_scoring_run("big", versions - FAILED_NEWEST, dag_id="big__batch_inference",
                                    run_id=f"scheduled__{run}", manifest_uri=f"/tmp/p/{run}/_manifest.json",
                                    output_prefix=f"/tmp/p/{run}", rows=10_000, seconds=3.0,
                                    committed_at=now - timedelta(days=run))
    for i in range(OTHER_MODELS):
        name = f"model_{i:02d}"
        for version in range(1, 6):
            registry.register_version(name, artifact_uri=f"s3://bucket/{name}/{version}", artifact_sha256="0" * 64,
                                      flavor="sklearn", task="binary_classification", params={},
                                      metrics={"validation_roc_auc": 0.8})
            registry.record_evaluation(name, version, metrics={"roc_auc": 0.8}, passed=True)
        registry.set_alias(name, "champion", 5, reason="bench", actor="bench")
        registry.record_drift(name, drift_share=0.1, drifted_columns=[], passed=True)
    if url.startswith("postgresql"):
        with registry.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")  # what autovacuum does after a bulk load


def client() -> Any:
    """The registry app in-process, every request answered as a logged-in admin."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from airflow_mlops.ui.app import create_app

    with contextlib.redirect_stdout(io.StringIO()):  # the simple auth manager prints generated passwords
        init_auth_manager()
    app = create_app()
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="admin", role="admin")
    return TestClient(app)


def time_pages(http: Any, url: str, repeats: int) -> dict[str, float]:
    """Median milliseconds per request of each page, against the registry at `url`."""
    os.environ["AIRFLOW_CONN_MLOPS_REGISTRY"] = json.dumps({"conn_type": "mlops_registry", "extra": {"url": url}})
    results = {}
    for label, path in (("models page", "/models"), ("model page", "/models/big")):
        first = http.get(path)  # warm: the first request compiles statements and templates
        if first.status_code != 200:
            raise SystemExit(f"{path}: {first.status_code} {first.text[:500]}")
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            http.get(path).raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
        results[label] = statistics.median(timings)
    return results


def report(engine: str, versions: int, scale: dict[str, float], baseline: dict[str, float], repeats: int) -> None:
    print(f"\n{engine}: `big` with {versions:,} versions vs {BASELINE_VERSIONS} (median of {repeats} requests)")
    print(f"  {'page':<14}{'scale ms':>10}{'baseline ms':>13}{'ratio':>8}")
    for label, ms in scale.items():
        verdict = "PASS" if ms < TARGET_MS else "FAIL"
        print(f"  {label:<14}{ms:>10.1f}{baseline[label]:>13.1f}{ms / baseline[label]:>7.2f}x  "
              f"{verdict} (target < {TARGET_MS} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.INFO)  # migrations and every request log a line at INFO
    folder = Path(tempfile.mkdtemp(prefix="ui-bench-"))
    (folder / "configs").mkdir()
    (folder / "configs" / "big.yaml").write_text(PIPELINE)
    os.environ.update({"AIRFLOW_HOME": str(folder / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                       "AIRFLOW_MLOPS_HOME": str(folder / "mlops"), "AIRFLOW_MLOPS_CONFIGS": str(folder / "configs")})
    from airflow_mlops.testing.postgres import create_database, running_postgres

    http = client()
    urls = {size: f"sqlite:///{folder / f'{size}.db'}" for size in (BASELINE_VERSIONS, args.versions)}
    for size, url in urls.items():
        populate(url, size)
    report("SQLite (file, WAL)", args.versions, time_pages(http, urls[args.versions], args.repeats),
           time_pages(http, urls[BASELINE_VERSIONS], args.repeats), args.repeats)
    with running_postgres() as server:
        urls = {size: create_database(server) for size in (BASELINE_VERSIONS, args.versions)}
        for size, url in urls.items():
            populate(url, size)
        report("PostgreSQL (local)", args.versions, time_pages(http, urls[args.versions], args.repeats),
               time_pages(http, urls[BASELINE_VERSIONS], args.repeats), args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
