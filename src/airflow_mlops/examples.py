"""Materialise the example pipelines' data (datasets bundled with scikit-learn) into the artifact root.

`airflow-mlops examples materialise` writes, for each example in dags/configs:
`data/<name>/train.parquet` (features + target), `data/<name>/score/part-*.parquet`
(new rows without the target, for batch inference and as "no drift" current data)
and `data/<name>/shifted/part-0.parquet` (the same rows with a few features
deliberately shifted, to demonstrate drift detection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.storage import ArtifactStore

EXAMPLES = ("breast_cancer", "wine", "diabetes")


def _frame(name: str) -> tuple[pd.DataFrame, str]:
    from sklearn import datasets

    if name == "breast_cancer":
        bunch = datasets.load_breast_cancer(as_frame=True)
        frame = bunch.frame
        return frame, "target"
    if name == "wine":
        bunch = datasets.load_wine(as_frame=True)
        frame = bunch.frame.rename(columns={"target": "cultivar"})
        frame["cultivar"] = frame["cultivar"].map(lambda c: f"class_{c}")
        return frame, "cultivar"
    if name == "diabetes":
        bunch = datasets.load_diabetes(as_frame=True, scaled=False)
        frame = bunch.frame.rename(columns={"target": "progression"})
        return frame, "progression"
    raise ValueError(f"unknown example {name!r}; expected one of {', '.join(EXAMPLES)}")


def example_frames(name: str, *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The example's frames: `train` (with target), `score` (without) and `shifted` (drifted score rows)."""
    import numpy as np

    frame, target = _frame(name)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    n_score = max(len(frame) // 5, 20)
    score = frame.iloc[order[:n_score]].drop(columns=[target]).reset_index(drop=True)
    train = frame.iloc[order[n_score:]].reset_index(drop=True)
    # Resampled score rows keep the training distribution; the shifted copy moves
    # most numeric features by two standard deviations so drift is unmistakable.
    current = frame.drop(columns=[target]).sample(n=len(frame), replace=True, random_state=seed).reset_index(drop=True)
    shifted = current.copy()
    numeric = [c for c in shifted.columns if shifted[c].dtype.kind == "f"]
    for column in numeric[: max(1, (len(numeric) * 2) // 3)]:
        shifted[column] = shifted[column] + 2 * frame[column].std()
    return {"train": train, "score": score, "current": current, "shifted": shifted}


def materialise_examples(store: ArtifactStore, names: tuple[str, ...] = EXAMPLES) -> dict[str, dict[str, Any]]:
    """Write every example's data into the store; returns the URIs written."""
    from airflow_mlops.data import write_table

    written: dict[str, dict[str, Any]] = {}
    for name in names:
        frames = example_frames(name)
        score = frames["score"]
        half = len(score) // 2
        written[name] = {
            "train": write_table(frames["train"], f"data/{name}/train.parquet", store).uri,
            "score": [
                write_table(score.iloc[:half], f"data/{name}/score/part-0.parquet", store).uri,
                write_table(score.iloc[half:], f"data/{name}/score/part-1.parquet", store).uri,
            ],
            "current": write_table(frames["current"], f"data/{name}/current/part-0.parquet", store).uri,
            "shifted": write_table(frames["shifted"], f"data/{name}/shifted/part-0.parquet", store).uri,
        }
    return written
