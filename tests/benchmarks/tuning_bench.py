"""N trials as mapped tasks against a plain sequential Optuna study in one process.

    .venv/bin/python tests/benchmarks/tuning_bench.py [--trials 40] [--tasks 4] [--rows 10000]

Both sides run the same objective on the same split: our `fit_model` (XGBoost, 60
rounds) scored on the validation rows, over a space that leaves the work per trial
alone (learning rate, min_child_weight, lambda; depth and rounds fixed), no pruning.

- plain: `optuna.create_study()` in memory and `study.optimize(objective, n_trials)`
  in this process, data already in memory.
- mapped: what `<pipeline>__retrain`'s tune group runs, each task in a fresh Python
  process, one after another (one worker slot): the plan task (split the table into
  the store, create the study in the embedded SQLite registry), then `--tasks` trial
  tasks, each importing what it needs, reading its two splits from the store and
  running its batch of trials against the RDB study.

Both sides also time each fit and its validation score (the training itself); on a
shared machine that time varies from trial to trial, so the overhead is what is left:
(wall - training) / N. For the mapped side that is task start, imports, data reads,
the study in a database, slot records and per-round reports, spread over the batch.
Target: under 1 s per trial beyond the training itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TARGET_OVERHEAD_S = 1.0
PARAMS = {"n_estimators": 60, "max_depth": 4, "early_stopping_rounds": 0}
SPACE = {
    "learning_rate": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
    "min_child_weight": {"type": "float", "low": 0.5, "high": 10.0},
    "reg_lambda": {"type": "float", "low": 0.1, "high": 10.0, "log": True},
}


def config_dict(trials: int, tasks: int) -> dict:
    return {
        "pipeline": "bench",
        "data": {"train": "data/bench/train.parquet", "target": "label"},
        "model": {"flavor": "xgboost", "task": "binary_classification", "params": PARAMS, "seed": 0},
        "evaluation": {"primary_metric": "log_loss"},
        "tuning": {"enabled": True, "n_trials": trials, "parallelism": tasks, "pruner": "none", "seed": 0,
                   "space": SPACE},
    }


def table(rows: int, features: int):  # DataFrame
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype("float32")
    y = ((x @ rng.normal(size=features) + rng.normal(scale=2.0, size=rows)) > 0).astype("int64")
    return pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(features)]).assign(label=y)


def plain(trials: int, rows: int, features: int) -> tuple[float, float]:
    """(wall seconds, seconds of fits and validation scores)."""
    import optuna

    from airflow_mlops.config import parse_pipeline_config
    from airflow_mlops.data.split import split_dataset
    from airflow_mlops.storage import open_store
    from airflow_mlops.training.base import fit_model
    from airflow_mlops.tuning.study import validation_score

    config = parse_pipeline_config(config_dict(trials, 1))
    store = open_store(tempfile.mkdtemp(prefix="tuning-bench-plain-"))
    split = config.data.split
    refs = split_dataset(table(rows, features), target="label", validation=split.validation, test=split.test,
                         stratify=True, seed=split.seed, out_prefix="split", store=store)
    from airflow_mlops.data import read_table

    train, validation = read_table(refs["train"].uri, store), read_table(refs["validation"].uri, store)

    training = [0.0]

    def objective(trial: optuna.Trial) -> float:
        params = {"learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
                  "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 10.0),
                  "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 10.0, log=True)}
        started = time.perf_counter()
        fitted = fit_model(config, train, validation, params_override=params)
        score = validation_score(config, fitted.model, validation, "log_loss")
        training[0] += time.perf_counter() - started
        return score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - started, training[0]


TASK = """
import json, sys, time
import airflow_mlops.training.base as base
import airflow_mlops.tuning.study as study
from airflow_mlops import steps
from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage import open_store
config = parse_pipeline_config(json.loads(sys.argv[1]))
store, registry = open_store(), ModelRegistry()
if sys.argv[2] == "plan":
    planned = steps.plan_tuning(config, store, registry, data_uri=config.data.train, n_trials=config.tuning.n_trials,
                                params_override=None, prefix="pipelines/bench/runs/bench/tune.plan", run_id="bench")
    print(json.dumps(planned.batches))
else:
    # The training itself, timed as on the plain side: each fit and its validation score.
    training, fit, score = [0.0], base.fit_model, study.validation_score
    def timed(function):
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                training[0] += time.perf_counter() - started
        return call
    base.fit_model, study.validation_score = timed(fit), timed(score)
    outcome = steps.run_tuning_batch(config, store, registry, batch=json.loads(sys.argv[2]), worker="bench")
    print(json.dumps({**outcome.to_dict(), "training_s": training[0]}))
"""


IMPORTS_ONLY = """
import optuna, sklearn.metrics, sklearn.model_selection, xgboost
from airflow_mlops import steps
from airflow_mlops.registry import ModelRegistry
"""


def task_start() -> float:
    """Seconds for a fresh process to import what a trial task imports, and nothing else."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS_ONLY], check=True, timeout=600)
    return time.perf_counter() - started


def mapped(trials: int, tasks: int, rows: int, features: int) -> tuple[float, list[dict]]:
    from airflow_mlops.data import write_table
    from airflow_mlops.storage import open_store

    home = tempfile.mkdtemp(prefix="tuning-bench-mapped-")
    write_table(table(rows, features), "data/bench/train.parquet", open_store(home))
    env = {**os.environ, "AIRFLOW_MLOPS_HOME": home}
    config = json.dumps(config_dict(trials, tasks))

    def task(argument: str) -> str:
        done = subprocess.run([sys.executable, "-c", TASK, config, argument], env=env, capture_output=True, text=True,
                              timeout=3600)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        return done.stdout.strip().splitlines()[-1]

    started = time.perf_counter()
    batches = json.loads(task("plan"))
    outcomes = [json.loads(task(json.dumps(batch))) for batch in batches]
    return time.perf_counter() - started, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=20)
    args = parser.parse_args()

    baseline, baseline_training = plain(args.trials, args.rows, args.features)
    ours, outcomes = mapped(args.trials, args.tasks, args.rows, args.features)
    ran = sum(o["completed"] + o["pruned"] + o["failed"] for o in outcomes)
    if ran != args.trials:
        raise SystemExit(f"FAIL: the mapped tasks ran {ran} trials, expected {args.trials}")
    ours_training = sum(o["training_s"] for o in outcomes)
    start = task_start()
    n = args.trials
    print(f"{n} trials, {args.rows} rows x {args.features} features, xgboost {PARAMS['n_estimators']} rounds")
    print(f"plain sequential study, one process:  wall {baseline:7.2f} s, training {baseline_training:7.2f} s, "
          f"overhead {(baseline - baseline_training) / n:.3f} s/trial")
    print(f"plan + {len(outcomes)} mapped tasks (processes): wall {ours:7.2f} s, training {ours_training:7.2f} s, "
          f"overhead {(ours - ours_training) / n:.3f} s/trial")
    print(f"ratio mapped/plain wall: {ours / baseline:.2f}; wall difference {(ours - baseline) / n:.3f} s/trial "
          "(counts the slower first fits in fresh processes, and load changes between the two sides)")
    print(f"a task's start alone (python + imports, measured once): {start:.2f} s; "
          f"{len(outcomes) + 1} starts = {(len(outcomes) + 1) * start / n:.3f} s/trial of the overhead")
    overhead = (ours - ours_training) / n
    verdict = "PASS" if overhead < TARGET_OVERHEAD_S else "FAIL"
    print(f"overhead per trial beyond the training itself: {overhead:.3f} s (target < {TARGET_OVERHEAD_S:.1f} s) {verdict}")


if __name__ == "__main__":
    main()
