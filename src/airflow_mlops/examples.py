"""Materialise the example pipelines' data (datasets bundled with scikit-learn) into the artifact root.

`airflow-mlops examples materialise` writes, for each example in dags/configs:
`data/<name>/train.parquet` (features + target), `data/<name>/score/part-*.parquet`
(new rows without the target, for batch inference and as "no drift" current data)
and `data/<name>/shifted/part-0.parquet` (the same rows with a few features
deliberately shifted, to demonstrate drift detection).

Examples with an id column (breast_cancer: `patient_id`) also get what monitoring
needs: `data/<name>/later/part-0.parquet` (a later batch: the score rows again,
under new ids) and the outcomes that arrive after scoring,
`data/<name>/outcomes/score.parquet` (the true labels of the score rows) and
`data/<name>/outcomes/later.parquet` (labels of the later batch that the world
changed under: every outcome differs from the one the model learned, so realized
performance collapses while the inputs look the same).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.storage import ArtifactStore

EXAMPLES = ("breast_cancer", "wine", "diabetes")
ID_COLUMNS = {"breast_cancer": "patient_id"}
"""Examples whose materialised data carries an id column (data.ids in their pipeline file)."""
LATER_ID_OFFSET = 100_000


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


def example_frames(name: str, *, seed: int = 0, ids: bool = False) -> dict[str, pd.DataFrame]:
    """The example's frames: `train` (with target), `score` (without) and `shifted` (drifted score rows).

    With `ids` (only for examples in ID_COLUMNS), every frame carries the id column
    and there are also `score_labels`, `later` and `later_labels` (see the module's doc).
    """
    import numpy as np

    frame, target = _frame(name)
    id_column = ID_COLUMNS.get(name) if ids else None
    if id_column:
        frame.insert(0, id_column, np.arange(1, len(frame) + 1, dtype="int64"))
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
    frames = {"train": train, "score": score, "current": current, "shifted": shifted}
    if id_column:
        truth = frame.set_index(id_column)[target]
        frames["score_labels"] = score[[id_column]].assign(**{target: truth.loc[score[id_column]].to_numpy()})
        later = score.copy()
        later[id_column] = later[id_column] + LATER_ID_OFFSET
        frames["later"] = later
        frames["later_labels"] = later[[id_column]].assign(**{target: _changed_outcomes(truth.loc[score[id_column]])})
    return frames


def _changed_outcomes(labels: pd.Series) -> Any:
    """Every label moved to another value: classes rotate, numbers mirror around their mean."""
    if labels.dtype.kind in "iub" or labels.dtype == object:
        classes = sorted(labels.unique())
        following = {c: classes[(i + 1) % len(classes)] for i, c in enumerate(classes)}
        return labels.map(following).to_numpy()
    return (2 * labels.mean() - labels).to_numpy()


def materialise_examples(store: ArtifactStore, names: tuple[str, ...] = EXAMPLES) -> dict[str, dict[str, Any]]:
    """Write every example's data into the store; returns the URIs written."""
    from airflow_mlops.data import write_table

    written: dict[str, dict[str, Any]] = {}
    for name in names:
        frames = example_frames(name, ids=name in ID_COLUMNS)
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
        if name in ID_COLUMNS:
            written[name].update({
                "later": write_table(frames["later"], f"data/{name}/later/part-0.parquet", store).uri,
                "score_outcomes": write_table(frames["score_labels"], f"data/{name}/outcomes/score.parquet", store).uri,
                "later_outcomes": write_table(frames["later_labels"], f"data/{name}/outcomes/later.parquet", store).uri,
            })
    return written
