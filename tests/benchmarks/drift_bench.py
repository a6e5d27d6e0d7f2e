"""Drift on large tables: plain Evidently DataDriftPreset on everything vs our drift check's default policy.

    .venv/bin/python tests/benchmarks/drift_bench.py [--rows 1000000]

Reference and current: `--rows` x 100 columns (80 numeric, 20 categorical); 10
columns (7 numeric + 3 categorical) are shifted in the current table. Each case
runs in a fresh process (its own peak RSS); data generation is not timed.
Targets: ours >= 5x faster, under 4 GiB peak, same drifted-column set.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

NUMERIC, CATEGORICAL = 80, 20
SHIFTED = [f"n{i:02d}" for i in range(7)] + [f"c{i:02d}" for i in range(3)]


def tables(rows: int):  # noqa: ANN201 - (reference, current) DataFrames
    import numpy as np
    import pandas as pd

    levels = np.array([f"level_{i}" for i in range(10)])
    base_p = np.full(10, 0.1)
    shifted_p = np.array([0.35, 0.25, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01])

    def make(seed: int, shift: bool) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        columns = {}
        for i in range(NUMERIC):
            name = f"n{i:02d}"
            columns[name] = rng.normal(loc=1.0 if shift and name in SHIFTED else 0.0, size=rows).astype("float32")
        for i in range(CATEGORICAL):
            name = f"c{i:02d}"
            columns[name] = pd.Categorical(levels[rng.choice(10, size=rows, p=shifted_p if shift and name in SHIFTED else base_p)])
        return pd.DataFrame(columns)

    return make(1, False), make(2, True)


def plain(rows: int) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current = tables(rows)
    started = time.perf_counter()
    definition = DataDefinition(numerical_columns=[c for c in reference.columns if c.startswith("n")],
                                categorical_columns=[c for c in reference.columns if c.startswith("c")])
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition), Dataset.from_pandas(reference, data_definition=definition)
    )
    drifted = sorted(
        test["metric_config"]["params"]["column"] for test in snapshot.dict()["tests"]
        if test["metric_config"]["params"].get("type", "").endswith("ValueDrift") and test["status"] != "SUCCESS"
    )
    return {"seconds": time.perf_counter() - started, "drifted": drifted}


def ours(rows: int) -> dict:
    from airflow_mlops.config import parse_pipeline_config
    from airflow_mlops.drift import check_drift
    from airflow_mlops.storage import open_store

    reference, current = tables(rows)
    import evidently  # noqa: F401 - imported before timing, as in the plain case

    config = parse_pipeline_config({
        "pipeline": "bench", "data": {"train": "unused.parquet", "target": "label"},
        "model": {"flavor": "xgboost", "task": "binary_classification"},
    })
    store = open_store(tempfile.mkdtemp(prefix="drift-bench-"))
    started = time.perf_counter()
    result = check_drift(config, reference, current, store, report_path="drift.html")
    return {"seconds": time.perf_counter() - started, "drifted": sorted(result.drifted_columns)}


def run(case: str, rows: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--case", case, "--rows", str(rows)], capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--case", choices=["plain", "ours"])
    args = parser.parse_args()
    if args.case:
        result = (plain if args.case == "plain" else ours)(args.rows)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0
    results = {"(a) Evidently DataDriftPreset, full tables": run("plain", args.rows),
               "(b) airflow-mlops check_drift, default policy": run("ours", args.rows)}
    print(f"{args.rows:,} rows x {NUMERIC + CATEGORICAL} columns per table; shifted: {', '.join(SHIFTED)}")
    for label, result in results.items():
        print(f"{label:<48}{result['seconds']:>8.1f} s {result['peak_rss_mb']:>8,.0f} MB peak  "
              f"drifted: {', '.join(result['drifted']) or 'none'}")
    (a, b) = results.values()
    speed = a["seconds"] / b["seconds"]
    print(f"speed-up: {speed:.1f}x (target >= 5x) {'PASS' if speed >= 5 else 'FAIL'}; "
          f"peak {b['peak_rss_mb'] / 1024:.2f} GiB (target < 4) {'PASS' if b['peak_rss_mb'] < 4096 else 'FAIL'}; "
          f"same drifted columns: {a['drifted'] == b['drifted']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
