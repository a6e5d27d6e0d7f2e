"""Registry throughput on SQLite and PostgreSQL, side by side with MLflow's SQLAlchemy model registry.

    .venv/bin/python tests/benchmarks/registry_bench.py [--mlflow-python /tmp/mlflow-venv/bin/python]

Per engine: register 1,000 versions, resolve an alias 10,000 times, 200
promotions (compare-and-set, with the history row). MLflow runs in its own virtual environment (its pins conflict with
Airflow's), created with `python3 -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip
install mlflow-skinny sqlalchemy alembic psycopg2-binary`, against a fresh
database on the same engine. Targets: resolution and registration >= 5x MLflow,
promotion >= 1x MLflow's (unconditional) alias set.

    .venv/bin/python tests/benchmarks/registry_bench.py --versions 100000

One model with that many versions and 1,000 alias moves: paging its versions,
filtering them by tag and metric, resolving the alias, reading the history and
listing models, each under 50 ms (median) on both engines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REGISTER, RESOLVE, PROMOTE = 1_000, 10_000, 200

MLFLOW_SCRIPT = """
import json, sys, time, logging
logging.disable(logging.WARNING)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
store = SqlAlchemyStore(sys.argv[1])
REGISTER, RESOLVE, PROMOTE = (int(x) for x in sys.argv[2:5])
store.create_registered_model("bench")
started = time.perf_counter()
for i in range(REGISTER):
    store.create_model_version("bench", source=f"s3://bucket/models/{i}", run_id=None)
register = time.perf_counter() - started
store.set_registered_model_alias("bench", "champion", "1")
started = time.perf_counter()
for _ in range(RESOLVE):
    store.get_model_version_by_alias("bench", "champion")
resolve = time.perf_counter() - started
started = time.perf_counter()
for i in range(PROMOTE):
    store.set_registered_model_alias("bench", "champion", str(2 + i))
promote = time.perf_counter() - started
print(json.dumps({"register": REGISTER / register, "resolve": RESOLVE / resolve, "promote": PROMOTE / promote}))
"""


def ours(url: str) -> dict[str, float]:
    from airflow_mlops.registry import ModelRegistry

    registry = ModelRegistry(url, upgrade=True)
    started = time.perf_counter()
    for i in range(REGISTER):
        registry.register_version("bench", artifact_uri=f"s3://bucket/models/{i}", artifact_sha256="0" * 64,
                                  flavor="xgboost", task="binary_classification", params={"max_depth": 4},
                                  metrics={"roc_auc": 0.9}, code_version="bench")
    register = time.perf_counter() - started
    registry.set_alias("bench", "champion", 1, reason="start")
    started = time.perf_counter()
    for _ in range(RESOLVE):
        registry.resolve("bench", "champion")
    resolve = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(PROMOTE):
        registry.set_alias("bench", "champion", 2 + i, expected_version=1 + i, actor="bench", reason="benchmark")
    promote = time.perf_counter() - started
    return {"register": REGISTER / register, "resolve": RESOLVE / resolve, "promote": PROMOTE / promote}


def mlflow(python: str, url: str) -> dict[str, float] | None:
    if not Path(python).exists():
        return None
    done = subprocess.run([python, "-c", MLFLOW_SCRIPT, url, str(REGISTER), str(RESOLVE), str(PROMOTE)],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"MLflow benchmark failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(engine: str, mine: dict[str, float], theirs: dict[str, float] | None) -> None:
    print(f"\n{engine}")
    print(f"  {'operation':<22}{'ours ops/s':>12}{'MLflow ops/s':>14}{'ratio':>8}")
    for key, label in (("register", f"register {REGISTER:,}"), ("resolve", f"resolve alias {RESOLVE:,}"),
                       ("promote", f"promote {PROMOTE}")):
        other = theirs[key] if theirs else float("nan")
        ratio = mine[key] / other if theirs else float("nan")
        target = 1 if key == "promote" else 5
        verdict = "" if not theirs else ("  PASS" if ratio >= target else f"  FAIL (target {target}x)")
        print(f"  {label:<22}{mine[key]:>12,.0f}{other:>14,.0f}{ratio:>7.1f}x{verdict}")


SCALE_TARGET_MS = 50
SCALE_REPEATS = 50


def populate(url: str, versions: int) -> None:
    """`versions` versions of one model, inserted in bulk (set-up, not timed), with 1,000 alias moves."""
    from datetime import datetime, timezone

    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.registry.models import ModelVersionRow

    registry = ModelRegistry(url, upgrade=True)
    registry.register_version("big", artifact_uri="s3://bucket/big/1", artifact_sha256="0" * 64, flavor="xgboost",
                              task="binary_classification", params={}, metrics={"roc_auc": 0.5})
    with registry.engine.begin() as connection:
        big_id = connection.exec_driver_sql("SELECT id FROM mlops_models WHERE name = 'big'").scalar_one()
        now = datetime.now(timezone.utc)
        rows = [
            {"model_id": big_id, "version": v, "artifact_uri": f"s3://bucket/big/{v}", "artifact_sha256": "0" * 64,
             "flavor": "xgboost", "task": "binary_classification", "params": {"max_depth": v % 8},
             "metrics": {"roc_auc": 0.5 + (v % 1000) / 2000}, "datasets": {}, "code_version": "bench",
             "library_versions": {}, "dag_id": "big__retrain", "run_id": f"run-{v}", "task_id": "train",
             "created_by": "bench", "created_at": now, "status": "active",
             "tags": {"team": "growth" if v % 10 == 0 else "core", "rank": v}}
            for v in range(2, versions + 1)
        ]
        for start in range(0, len(rows), 10_000):
            connection.execute(ModelVersionRow.__table__.insert(), rows[start:start + 10_000])
    for move in range(1_000):
        registry.set_alias("big", "champion", versions - move % 500, reason="scale", actor="bench")
    if url.startswith("postgresql"):
        with registry.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")  # what autovacuum does after a bulk load


def scale(url: str, versions: int) -> dict[str, float]:
    """Milliseconds per call (median of repeats) of what the registry pages and the DAGs ask for."""
    import statistics

    from airflow_mlops.registry import ModelRegistry

    populate(url, versions)
    registry = ModelRegistry(url)
    calls = {
        "newest 50 versions": lambda: registry.search_versions("big", newest_first=True, limit=50),
        "page 1,000 of 50": lambda: registry.search_versions("big", limit=50, offset=50_000 % versions),
        "tag filter, 50": lambda: registry.search_versions("big", tags={"team": "growth"}, limit=50, newest_first=True),
        "metric filter, 50": lambda: registry.search_versions("big", min_metrics={"roc_auc": 0.99}, limit=50),
        "resolve alias": lambda: registry.resolve("big", "champion"),
        "alias history (1,000)": lambda: registry.history("big", "champion"),
        "list models": lambda: registry.list_models(),
    }
    results = {}
    for label, call in calls.items():
        call()  # warm: the first call compiles the statement
        timings = []
        for _ in range(SCALE_REPEATS):
            started = time.perf_counter()
            call()
            timings.append((time.perf_counter() - started) * 1000)
        results[label] = statistics.median(timings)
    return results


def report_scale(engine: str, versions: int, results: dict[str, float]) -> None:
    print(f"\n{engine}, {versions:,} versions of one model (median of {SCALE_REPEATS} calls)")
    for label, ms in results.items():
        print(f"  {label:<24}{ms:>9.1f} ms  {'PASS' if ms < SCALE_TARGET_MS else 'FAIL'} (target < {SCALE_TARGET_MS} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlflow-python", default="/tmp/mlflow-venv/bin/python")
    parser.add_argument("--versions", type=int, help="instead: time paging, filters, aliases and history at this scale")
    args = parser.parse_args()
    from airflow_mlops.testing.postgres import create_database, running_postgres

    if args.versions:
        folder = Path(tempfile.mkdtemp(prefix="registry-scale-"))
        report_scale("SQLite (file, WAL)", args.versions, scale(f"sqlite:///{folder / 'scale.db'}", args.versions))
        with running_postgres() as server:
            report_scale("PostgreSQL 15 (local)", args.versions, scale(create_database(server), args.versions))
        return 0

    folder = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    report("SQLite (file, WAL)", ours(f"sqlite:///{folder / 'ours.db'}"), mlflow(args.mlflow_python, f"sqlite:///{folder / 'mlflow.db'}"))
    with running_postgres() as server:
        report("PostgreSQL 15 (local)", ours(create_database(server)), mlflow(args.mlflow_python, create_database(server)))
    if not Path(args.mlflow_python).exists():
        print(f"\nMLflow not found at {args.mlflow_python}: see the module docstring to create its venv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
