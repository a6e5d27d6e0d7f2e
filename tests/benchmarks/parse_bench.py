"""DAG-file parse time of each template with 20 pipeline files, against a one-task DAG file.

    .venv/bin/python tests/benchmarks/parse_bench.py [--repeat 5]

Each parse runs in a fresh process that imports Airflow's DagBag first and then
freezes the garbage collector, as Airflow's dag-processor manager does before it
forks the processes that parse files; so only the file's own parse is timed, and
the full-heap collections a production parse never pays are not counted.
Target: under 0.2 s per template beyond the one-task file, and none of the ML
libraries imported while parsing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET_SECONDS = 0.2
HEAVY = ("torch", "xgboost", "sklearn", "great_expectations", "evidently", "fairlearn", "pandas", "pyarrow", "boto3")
ONE_TASK = '''
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("one_task", start_date=pendulum.datetime(2024, 1, 1), schedule=None):
    EmptyOperator(task_id="only")
'''
CHILD = """
import gc, json, sys, time
from airflow.dag_processing.dagbag import DagBag
gc.freeze()  # as Airflow's dag-processor manager does before it forks the parsing processes
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started
assert not bag.import_errors, bag.import_errors
print(json.dumps({"seconds": seconds, "dags": len(bag.dag_ids),
                  "heavy": sorted(m for m in sys.argv[2].split(",") if m in sys.modules)}))
"""


def parse(folder: Path, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), ",".join(HEAVY)], env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pipelines", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="parse-bench-"))
    configs = work / "configs"
    configs.mkdir()
    example = (REPO / "dags" / "configs" / "breast_cancer.yaml").read_text()
    for index in range(args.pipelines):
        (configs / f"p{index:02d}.yaml").write_text(example.replace("pipeline: breast_cancer", f"pipeline: p{index:02d}"))
    env = {**os.environ, "AIRFLOW_HOME": str(work / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW_MLOPS_CONFIGS": str(configs), "AIRFLOW_MLOPS_HOME": str(work / "mlops")}
    files = {"one-task DAG (baseline)": None, "retraining.py": "retraining.py",
             "batch_inference.py": "batch_inference.py", "drift_monitoring.py": "drift_monitoring.py",
             "monitoring.py": "monitoring.py"}
    results = {}
    for label, template in files.items():
        folder = work / label.split()[0]
        folder.mkdir()
        if template:
            shutil.copy(REPO / "dags" / template, folder / template)
        else:
            (folder / "one_task.py").write_text(ONE_TASK)
        runs = [parse(folder, env) for _ in range(args.repeat)]
        results[label] = {"seconds": statistics.median(r["seconds"] for r in runs), "dags": runs[0]["dags"],
                          "heavy": runs[0]["heavy"]}
    base = results["one-task DAG (baseline)"]["seconds"]
    print(f"{args.pipelines} pipeline files, median of {args.repeat} fresh processes")
    print(f"{'file':<26}{'DAGs':>5}{'parse s':>9}{'beyond baseline':>17}  heavy imports")
    for label, result in results.items():
        extra = result["seconds"] - base
        verdict = "" if label.startswith("one-task") else ("  PASS" if extra < TARGET_SECONDS else f"  FAIL (target < {TARGET_SECONDS} s)")
        print(f"{label:<26}{result['dags']:>5}{result['seconds']:>9.3f}{extra:>16.3f}s  "
              f"{', '.join(result['heavy']) or 'none'}{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
