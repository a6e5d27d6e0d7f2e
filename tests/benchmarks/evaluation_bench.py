"""What evaluation a reviewer can sign costs: slices, fairness, diagnostics, importance and contributions.

    .venv/bin/python tests/benchmarks/evaluation_bench.py [--rows 1000000] [--train-rows 1000000] [--features 50]

An XGBoost model (our trainer; 100 rounds of depth 6 on 50 features, as in training_bench.py) is
trained on `--train-rows` rows; then `evaluate_candidate` runs on `--rows` test rows plain (overall
metrics, baseline, stored test predictions and the report; diagnostics and explanations off) and
reviewed (plus gated slices on a categorical column and on quartiles of a numeric one, a fairness
section with three metrics and limits, diagnostics, permutation importance and XGBoost contributions
with the default bounded samples). The overhead is reviewed minus plain, as a share of the training
time; target at most 20%. Training and both evaluations run `--repeat` times (interleaved) and the
fastest counts: a shared 2-core machine's speed drifts. What only the review imports (fairlearn,
scikit-learn's inspection and calibration) is timed first, on its own. Each part is then timed
alone, and the explanations again on a tenth of the test rows: their cost must not grow with the
test set.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

XGB = {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.1, "early_stopping_rounds": 0}


def data(rows: int, features: int, seed: int):
    """Numeric features (f00 informative), an `age`, and a `group` the model never sees with a lower base rate."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float32")
    group = rng.choice(np.array(["a", "b", "c"], dtype=object), size=rows, p=[0.5, 0.3, 0.2])
    weights = np.linspace(2.0, 0.1, features)
    score = x @ weights - 0.8 * (group == "c") + rng.normal(scale=2.0, size=rows)
    frame = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(features)])
    frame["age"] = rng.integers(18, 90, size=rows).astype("int64")
    frame["group"] = group
    frame["label"] = (score > 0).astype("int64")
    return frame


def config(reviewed: bool):
    from airflow_mlops.config import parse_pipeline_config

    evaluation: dict = {"metrics": ["roc_auc", "accuracy", "f1", "log_loss"],
                        "diagnostics": {"enabled": reviewed}, "explanations": {"enabled": reviewed}}
    if reviewed:
        evaluation["slices"] = [
            {"column": "group", "thresholds": {"roc_auc": {"min": 0.5}}, "max_gap": {"roc_auc": 0.2}},
            {"column": "age", "bins": 4, "thresholds": {"accuracy": {"min": 0.5}}},
        ]
        evaluation["fairness"] = {
            "sensitive": ["group"],
            "metrics": ["demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference"],
            "max": {"demographic_parity_difference": 0.9}, "min": {"demographic_parity_ratio": 0.0},
        }
    return parse_pipeline_config({
        "pipeline": "bench", "data": {"train": "unused.parquet", "target": "label", "features": "all"},
        "model": {"flavor": "xgboost", "task": "binary_classification", "params": XGB, "seed": 0},
        "evaluation": evaluation,
    })


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="test rows")
    parser.add_argument("--train-rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the fastest counts")
    args = parser.parse_args()

    import sklearn.metrics
    import skops.io  # noqa: F401
    import xgboost  # noqa: F401

    started = time.perf_counter()
    import fairlearn.metrics  # noqa: F401
    import sklearn.calibration
    import sklearn.inspection  # noqa: F401
    review_imports = time.perf_counter() - started

    from airflow_mlops.evaluation import evaluate_candidate
    from airflow_mlops.evaluation.diagnostics import diagnose
    from airflow_mlops.evaluation.explain import explain
    from airflow_mlops.evaluation.fairness import evaluate_fairness
    from airflow_mlops.evaluation.slices import Predicted, evaluate_slices
    from airflow_mlops.storage import open_store
    from airflow_mlops.training import load_model, train_model

    store = open_store(tempfile.mkdtemp(prefix="evaluation-bench-"))
    plain, reviewed = config(False), config(True)
    train = data(args.train_rows, args.features, 0)
    test = data(args.rows, args.features, 1)
    runs = [timed(train_model, reviewed, train, None, store, output_prefix=f"model{i}") for i in range(args.repeat)]
    train_seconds, trained = min(runs, key=lambda run: run[0])
    del train, runs
    model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
    assert "group" not in model.feature_names, "the sensitive column must not be a feature"

    evaluate_candidate(plain, model, test.iloc[:1000], store, report_path="warm/evaluation.html")  # first-call costs
    seconds: dict[str, list[float]] = {"plain": [], "reviewed": []}
    for repeat in range(args.repeat):
        for kind in ("plain", "reviewed") if repeat % 2 == 0 else ("reviewed", "plain"):
            elapsed, evaluation = timed(evaluate_candidate, reviewed if kind == "reviewed" else plain, model, test,
                                        store, report_path=f"{kind}/evaluation.html")
            seconds[kind].append(elapsed)
            if kind == "reviewed":
                record = evaluation.record
    plain_seconds, reviewed_seconds = min(seconds["plain"]), min(seconds["reviewed"])
    overhead = reviewed_seconds - plain_seconds
    ratio = overhead / train_seconds

    # Each part alone, on the same predictions.
    y_true = test["label"].to_numpy()
    proba = model.predict_proba(test)
    predictions = model.labels.decode(proba.argmax(axis=1))
    predicted = Predicted(model.task, y_true, predictions, proba, model.classes, {})
    settings = reviewed.evaluation
    overall = record["metrics"]
    parts = {
        "slices (7 groups, 2 gated)": timed(evaluate_slices, settings.slices, test, predicted, overall, "roc_auc")[0],
        "fairness (3 metrics)": timed(evaluate_fairness, settings.fairness, test, y_true, predictions,
                                      model.classes)[0],
        "diagnostics": timed(diagnose, model.task, y_true, predictions, proba, model.classes)[0],
        "explanations (sample)": timed(explain, model, test, "label", "roc_auc", settings.explanations)[0],
        "explanations, 1/10 test": timed(explain, model, test.iloc[: len(test) // 10], "label", "roc_auc",
                                         settings.explanations)[0],
    }
    explained = record["explanations"]
    print(f"{args.train_rows:,} training rows, {args.rows:,} test rows x {args.features} float32 features + age, "
          f"group; xgboost {XGB['n_estimators']} rounds depth {XGB['max_depth']}")
    print(f"fastest of {args.repeat}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"training (train_model)              {train_seconds:8.1f} s")
    print(f"evaluation, plain                   {plain_seconds:8.1f} s")
    print(f"evaluation, reviewed                {reviewed_seconds:8.1f} s")
    for name, elapsed in parts.items():
        print(f"  {name:<34}{elapsed:8.2f} s")
    print(f"  imports only the review needs     {review_imports:8.2f} s (once per task process; not in the above)")
    print(f"permutation importance on {explained['permutation']['rows']:,} rows x "
          f"{explained['permutation']['n_repeats']} repeats; top feature {explained['permutation']['features'][0]['feature']}"
          f", by contributions {explained['contributions']['features'][0]['feature']}")
    verdict = "PASS" if ratio <= 0.20 else "FAIL (target <= 20%)"
    print(f"overhead of the review: {overhead:.1f} s = {ratio:.1%} of training time  {verdict}")
    with_imports = (overhead + review_imports) / train_seconds
    print(f"with the review's imports: {overhead + review_imports:.1f} s = {with_imports:.1%} of training time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
