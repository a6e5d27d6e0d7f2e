"""`make demo`: the main job end to end through Airflow, on the embedded defaults.

A fresh AIRFLOW_HOME under the project (.airflow/demo), SQLite registry and
local artifact store under it. Runs, with `airflow dags test`:
1. breast_cancer__retrain            -> v1 becomes champion
2. breast_cancer__retrain (worse)    -> the evaluation gate rejects v2
3. breast_cancer__batch_inference    -> scores new rows with the champion, manifest last,
                                        then prediction drift and estimated performance
4. breast_cancer__drift (shifted)    -> drift detected, a retraining run is started
5. labels arrive, breast_cancer__monitor -> realized performance of the champion, recorded
6. a later batch whose outcomes changed, breast_cancer__monitor -> degradation starts a retraining
then prints the registry: versions, aliases, alias history.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOME = REPO / ".airflow" / "demo"
PIPELINE = "breast_cancer"


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run(*args: str, env: dict[str, str], check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if not quiet or (check and done.returncode != 0):
        sys.stdout.write(done.stdout[-4000:])
    if check and done.returncode != 0:
        sys.stderr.write(done.stderr[-6000:])
        raise SystemExit(f"demo step failed: {' '.join(args)}")
    return done


def dags_test(dag_id: str, env: dict[str, str], conf: dict | None = None) -> tuple[bool, str]:
    args = [str(BIN / "airflow"), "dags", "test", dag_id]
    if conf:
        args += ["--conf", json.dumps(conf)]
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    failed = done.returncode != 0 or "state=failed" in output or "DagRunState.FAILED" in output
    return not failed, output


def queued_retraining_runs(env: dict[str, str]) -> list[dict]:
    runs = run(str(BIN / "airflow"), "dags", "list-runs", f"{PIPELINE}__retrain", "--state", "queued", "-o", "json",
               env=env, quiet=True)
    listing = [line for line in runs.stdout.splitlines() if line.startswith("[")]
    return json.loads(listing[-1]) if listing else []


def labels_arrive(outcomes: str, name: str) -> Path:
    """What a labelling job does: the outcomes of scored rows land in monitoring.labels."""
    folder = HOME / "mlops" / "data" / PIPELINE / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.parquet"
    shutil.copy(HOME / "mlops" / "data" / PIPELINE / "outcomes" / f"{outcomes}.parquet", target)
    return target


def registry():  # a ModelRegistry, imported late so the demo starts fast
    from airflow_mlops.registry import ModelRegistry

    return ModelRegistry(f"sqlite:///{HOME / 'mlops' / 'registry.db'}")


def metrics_line(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, (int, float)) else f"{k} n/a" for k, v in metrics.items())


def gate_lines(output: str) -> list[str]:
    return [line.split("gate: ", 1)[-1] for line in output.splitlines() if " gate: " in line or "gate failed" in line]


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW_MLOPS_HOME": str(HOME / "mlops"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "false",
    }
    cli = str(BIN / "airflow-mlops")

    banner("setting up Airflow metadata DB and the example data")
    run(str(BIN / "airflow"), "db", "migrate", env=env, quiet=True)
    run(cli, "examples", "materialise", env=env)

    banner(f"1. {PIPELINE}__retrain: first model, no champion yet")
    ok, out = dags_test(f"{PIPELINE}__retrain", env)
    if not ok:
        print(out[-6000:])
        raise SystemExit("the first retraining should have promoted v1")
    run(cli, "registry", "aliases", PIPELINE, env=env)

    banner(f"2. {PIPELINE}__retrain with a deliberately weak model: the gate must reject it")
    ok, out = dags_test(f"{PIPELINE}__retrain", env, {"model_params": {"n_estimators": 2, "max_depth": 1, "learning_rate": 0.01}})
    for line in gate_lines(out)[:6]:
        print("  ", line)
    if ok:
        raise SystemExit("the weak model was not rejected")
    print("   -> rejected by the evaluation gate; the champion is unchanged")

    banner(f"3. {PIPELINE}__batch_inference with the champion")
    ok, out = dags_test(f"{PIPELINE}__batch_inference", env)
    if not ok:
        print(out[-6000:])
        raise SystemExit("batch inference failed")
    manifests = sorted((HOME / "mlops" / "predictions" / PIPELINE).rglob("_manifest.json"))
    manifest = json.loads(manifests[-1].read_text())
    print(f"   manifest {manifests[-1].relative_to(HOME)}: {manifest.get('total_rows', manifest.get('rows'))} rows "
          f"scored by {manifest.get('model', {})}")
    estimated = registry().performance_records(PIPELINE, kind="estimated")
    if estimated:
        print(f"   estimated performance before any label (CBPE): {estimated[-1].summary}")
    predictions = registry().drift_records(PIPELINE, kind="prediction")
    if predictions:
        verdict = "drifted" if not predictions[-1].passed else "no drift"
        print(f"   prediction drift against v1's test predictions: {verdict} (share {predictions[-1].drift_share:.2f})")

    banner(f"4. {PIPELINE}__drift on deliberately shifted data")
    ok, out = dags_test(f"{PIPELINE}__drift", env, {"current": f"data/{PIPELINE}/shifted/"})
    for line in gate_lines(out)[:5]:
        print("  ", line)
    triggered = queued_retraining_runs(env)
    if not ok or not triggered:
        print(out[-6000:])
        raise SystemExit("drift should have been detected and a retraining started")
    print(f"   -> drift detected; the drift DAG started retraining run {triggered[0]['run_id']} "
          "(queued for the scheduler, with the drift summary as its 'reason')")

    banner(f"5. labels arrive for the scored batch; {PIPELINE}__monitor records realized performance")
    print(f"   {labels_arrive('score', 'first-batch').relative_to(HOME)}")
    ok, out = dags_test(f"{PIPELINE}__monitor", env)
    realized = registry().performance_records(PIPELINE, kind="realized")
    if not ok or not realized or realized[-1].passed is False:
        print(out[-6000:])
        raise SystemExit("the monitor should have recorded the champion's realized performance, not degraded")
    last = realized[-1]
    print(f"   v{last.version}: {last.labelled_rows} labelled of {last.rows} scored rows: {metrics_line(last.metrics)}")
    print(f"   -> {last.summary}")

    banner(f"6. a later batch, then labels showing the world changed: {PIPELINE}__monitor starts retraining")
    before = {r["run_id"] for r in queued_retraining_runs(env)}
    ok, out = dags_test(f"{PIPELINE}__batch_inference", env, {"input": f"data/{PIPELINE}/later/"})
    if not ok:
        print(out[-6000:])
        raise SystemExit("the later batch failed")
    print(f"   {labels_arrive('later', 'later-batch').relative_to(HOME)}")
    ok, out = dags_test(f"{PIPELINE}__monitor", env)
    last = registry().performance_records(PIPELINE, kind="realized")[-1]
    started_now = [r for r in queued_retraining_runs(env) if r["run_id"] not in before]
    if not ok or last.passed is not False or not started_now:
        print(out[-6000:])
        raise SystemExit("the degradation should have been detected and a retraining started")
    print(f"   v{last.version}: {last.labelled_rows} labelled rows: {metrics_line(last.metrics)}")
    print(f"   -> degraded: {last.summary}")
    print(f"   -> the monitor started retraining run {started_now[0]['run_id']} (reason: 'degradation: ...')")

    banner("the registry")
    run(cli, "registry", "versions", PIPELINE, env=env)
    run(cli, "registry", "aliases", PIPELINE, env=env)
    run(cli, "registry", "history", PIPELINE, "champion", env=env)
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; AIRFLOW_HOME={HOME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
