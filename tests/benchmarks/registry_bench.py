"""Registry throughput on SQLite and PostgreSQL, side by side with MLflow's SQLAlchemy model registry.

    .venv/bin/python tests/benchmarks/registry_bench.py [--mlflow-python /tmp/mlflow-venv/bin/python]

Per engine: register 1,000 versions, resolve an alias 10,000 times, 200
promotions. MLflow runs in its own virtual environment (its pins conflict with
Airflow's), created with `python3 -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip
install mlflow-skinny sqlalchemy alembic psycopg2-binary`, against a fresh
database on the same engine. Target: resolution and registration >= 5x MLflow.
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
        verdict = "" if key == "promote" or not theirs else ("  PASS" if ratio >= 5 else "  FAIL (target 5x)")
        print(f"  {label:<22}{mine[key]:>12,.0f}{other:>14,.0f}{ratio:>7.1f}x{verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlflow-python", default="/tmp/mlflow-venv/bin/python")
    args = parser.parse_args()
    from airflow_mlops.testing.postgres import create_database, running_postgres

    folder = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    report("SQLite (file, WAL)", ours(f"sqlite:///{folder / 'ours.db'}"), mlflow(args.mlflow_python, f"sqlite:///{folder / 'mlflow.db'}"))
    with running_postgres() as server:
        report("PostgreSQL 15 (local)", ours(create_database(server)), mlflow(args.mlflow_python, create_database(server)))
    if not Path(args.mlflow_python).exists():
        print(f"\nMLflow not found at {args.mlflow_python}: see the module docstring to create its venv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
