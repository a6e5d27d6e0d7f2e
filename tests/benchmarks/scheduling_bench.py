"""What Airflow's scheduling costs per batch-inference chunk, measured through a real scheduler.

    .venv/bin/python tests/benchmarks/scheduling_bench.py [--chunks 256] [--parallelism 2]

A real Airflow (api-server, scheduler, dag-processor; LocalExecutor, SQLite
metadata) runs `<pipeline>__batch_inference` on an input planned into
`--chunks` mapped `score` tasks of 100 rows each, so scoring itself is a few
milliseconds per chunk and nearly all of a chunk's time is Airflow's. Printed:
- scoring per chunk: the same chunks scored in a loop in one process, divided
  by their number (the manifest's per-part seconds include each task
  process's imports and model load, so they are not pure scoring);
- task overhead: per chunk, the mean mapped-task duration minus that
  (process start, DAG parse, imports, model load, XCom, state updates);
- scheduling overhead: per chunk, the score phase's wall time times the
  parallelism, minus the tasks' durations, over the chunks (time a slot
  waits for the scheduler to hand it the next task);
- the whole run's wall time.
The baseline in the same process is the same chunks scored in a loop with
`score_chunk` (no Airflow): the ratio is what Airflow's per-task isolation
costs on top. Target: total overhead per chunk under 5 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[2]
PIPELINE = "breast_cancer"
ROWS_PER_CHUNK = 100
TARGET_OVERHEAD_S = 5.0


def _seconds(ti: dict) -> float:
    return (datetime.fromisoformat(ti["end_date"]) - datetime.fromisoformat(ti["start_date"])).total_seconds()


def prepare(root: Path, chunks: int) -> dict:
    """Configs, the example data resampled to `chunks` x 100 rows, and a champion trained in-process."""
    import yaml

    from airflow_mlops.config import parse_pipeline_config
    from airflow_mlops.data import read_table, write_table
    from airflow_mlops.examples import materialise_examples
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.steps import train_and_register
    from airflow_mlops.storage import open_store

    store = open_store(str(root / "mlops"))
    written = materialise_examples(store, (PIPELINE,))[PIPELINE]
    score = read_table(written["score"][0], store)
    big = score.sample(n=chunks * ROWS_PER_CHUNK, replace=True, random_state=0).reset_index(drop=True)
    for chunk in range(chunks):  # chunks are cut on row-group boundaries: one small file per chunk
        write_table(big.iloc[chunk * ROWS_PER_CHUNK:(chunk + 1) * ROWS_PER_CHUNK],
                    f"data/bench/input/part-{chunk:05d}.parquet", store)
    text = (REPO / "dags" / "configs" / f"{PIPELINE}.yaml").read_text().replace("\n  on:", '\n  "on":')
    config = yaml.safe_load(text)
    config["retraining"] = {"schedule": None, "on_new_data": False}
    config["inference"].update(schedule=None, input=None, chunk_rows=ROWS_PER_CHUNK)
    config["drift"]["schedule"] = None
    config.pop("monitoring", None)
    (root / "configs").mkdir()
    (root / "configs" / f"{PIPELINE}.yaml").write_text(yaml.safe_dump(config))
    registry = ModelRegistry(f"sqlite:///{root / 'mlops' / 'registry.db'}")
    pipeline = parse_pipeline_config(config)
    trained = train_and_register(pipeline, store, registry, data_uri=written["train"], prefix="bench/train",
                                 lineage={"dag_id": "bench", "run_id": "bench", "task_id": "train"})
    registry.set_alias(PIPELINE, "champion", trained.model.version, reason="scheduling benchmark")
    return {"store": store, "registry": registry, "config": pipeline, "input": "data/bench/input"}


def in_process(prepared: dict, chunks: int) -> float:
    """The baseline: plan and score every chunk in a loop, no Airflow."""
    from airflow_mlops.inference import commit_batch, plan_batch, score_chunk

    started = time.perf_counter()
    plan = plan_batch(prepared["config"], prepared["registry"], prepared["store"], run_id="in-process",
                      input_uri=prepared["input"])
    if len(plan.chunks) != chunks:
        raise SystemExit(f"planned {len(plan.chunks)} chunks, not {chunks}")
    commit_batch(plan, [score_chunk(plan, c.index, prepared["store"]) for c in plan.chunks], prepared["store"])
    return time.perf_counter() - started


def through_airflow(root: Path, prepared: dict, parallelism: int) -> dict:
    from airflow_mlops.testing.airflow import running_airflow

    dags = root / "dags"
    dags.mkdir()
    for template in ("batch_inference.py", "pipeline_files.py"):
        shutil.copy(REPO / "dags" / template, dags / template)
    env = {"AIRFLOW_MLOPS_HOME": str(root / "mlops"), "AIRFLOW_MLOPS_CONFIGS": str(root / "configs"),
           "GX_ANALYTICS_ENABLED": "false"}
    with running_airflow(dags, home=root / "airflow", env=env, parallelism=parallelism,
                         components=("api-server", "scheduler", "dag-processor")) as airflow:
        dag_id = f"{PIPELINE}__batch_inference"
        airflow.wait_for_dag(dag_id)
        started = time.perf_counter()
        run_id = airflow.trigger(dag_id, {"input": prepared["input"]})
        airflow.wait_for_run(dag_id, run_id, timeout=3600)
        wall = time.perf_counter() - started
        tis = []
        while len(tis) % 100 == 0:  # the API answers at most 100 task instances a page
            page = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
                                      f"?limit=100&offset={len(tis)}")["task_instances"]
            if not page:
                break
            tis += page
        committed = airflow.xcom(dag_id, run_id, "commit")
    manifest = prepared["store"].read_json(committed["uri"])
    scores = [ti for ti in tis if ti["task_id"] == "score"]
    scoring = sum(part["seconds"] for part in manifest["parts"])
    durations = sum(_seconds(ti) for ti in scores)
    phase = (max(datetime.fromisoformat(t["end_date"]) for t in scores)
             - min(datetime.fromisoformat(t["start_date"]) for t in scores)).total_seconds()
    return {"wall": wall, "chunks": len(scores), "scoring": scoring, "task_durations": durations, "phase": phase}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=256)
    parser.add_argument("--parallelism", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scheduling-bench-"))
    prepared = prepare(root, args.chunks)
    baseline = in_process(prepared, args.chunks)
    airflow = through_airflow(root, prepared, args.parallelism)
    n = airflow["chunks"]
    if n != args.chunks:
        raise SystemExit(f"read {n} score task instances, expected {args.chunks}")
    scoring_per_chunk = baseline / n
    task_overhead = airflow["task_durations"] / n - scoring_per_chunk
    scheduling = max(airflow["phase"] * args.parallelism - airflow["task_durations"], 0.0) / n
    total = task_overhead + scheduling
    print(f"{n} mapped chunks of {ROWS_PER_CHUNK} rows, LocalExecutor, parallelism {args.parallelism}")
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in airflow.items()}))
    print(f"in one process (score_chunk in a loop): {baseline:8.1f} s")
    print(f"through Airflow (whole run):             {airflow['wall']:8.1f} s  ({airflow['wall'] / baseline:.0f}x)")
    print(f"scoring per chunk (in one process):      {scoring_per_chunk:8.3f} s")
    print(f"task overhead per chunk:                 {task_overhead:8.2f} s  (process, parse, model load, XCom)")
    print(f"scheduling overhead per chunk:           {scheduling:8.2f} s  (a free slot waiting for its next task)")
    print(f"overhead per chunk beyond scoring:       {total:8.2f} s  (target < {TARGET_OVERHEAD_S:g}) "
          f"{'PASS' if total < TARGET_OVERHEAD_S else 'FAIL'}")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
