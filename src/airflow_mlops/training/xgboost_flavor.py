"""XGBoost flavor: native training with early stopping, categorical features, UBJ on disk."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import TrainingError
from airflow_mlops.training.base import FitContext
from airflow_mlops.training.threads import machine_threads

if TYPE_CHECKING:
    from collections.abc import Sequence
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pandas as pd

ALIASES = {"learning_rate": "eta", "n_estimators": None, "early_stopping_rounds": None, "random_state": "seed"}
PIECE_ROWS = 32_768  # at most: its row-major copy stays in cache
MIN_PIECE_ROWS = 4_096  # at least: a call costs about 0.1 ms, as much as predicting 80 rows (200 trees)
_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _piece_bounds(rows: int, threads: int) -> list[tuple[int, int]]:
    """Guided: pieces shrink towards the end of a call, so that its threads finish together."""
    bounds, start = [], 0
    while start < rows:
        size = min(PIECE_ROWS, max(MIN_PIECE_ROWS, -(-(rows - start) // (2 * threads))))
        bounds.append((start, min(rows, start + size)))
        start += size
    return bounds or [(0, 0)]


def _piece_pool() -> ThreadPoolExecutor:
    """One prediction thread per core, per process (a forked child starts its own)."""
    global _POOL
    from concurrent.futures import ThreadPoolExecutor

    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (os.getpid(), ThreadPoolExecutor(machine_threads(), thread_name_prefix="xgboost-piece"))
        return _POOL[1]


class XGBoostTrainer:
    flavor = "xgboost"
    model_file = "model.ubj"

    def __init__(self, booster: Any = None, categories: dict[str, list[Any]] | None = None, best_iteration: int | None = None) -> None:
        self.booster = booster
        self.categories = categories or {}
        self.best_iteration = best_iteration

    def _matrix(self, data: pd.DataFrame, label: np.ndarray | None = None) -> Any:
        import pandas as pd
        import xgboost as xgb

        frame = data.copy() if self.categories else data  # a copy only when columns change type
        for column, values in self.categories.items():
            frame[column] = pd.Categorical(frame[column], categories=values)
        return xgb.DMatrix(frame, label=label, enable_categorical=True, nthread=machine_threads())

    def fit(self, train: pd.DataFrame, y_train: np.ndarray, validation: pd.DataFrame | None,
            y_validation: np.ndarray | None, context: FitContext) -> dict[str, Any]:
        import xgboost as xgb

        self.categories = {c: context.spec.categories[c] for c in context.spec.categorical}
        params = dict(context.params)
        rounds = int(params.pop("n_estimators", params.pop("num_boost_round", 100)))
        early = params.pop("early_stopping_rounds", 20)
        booster_params: dict[str, Any] = {"tree_method": "hist", "nthread": machine_threads(), "seed": context.seed}
        if context.task == "binary_classification":
            booster_params.update(objective="binary:logistic", eval_metric="logloss")
        elif context.task == "multiclass_classification":
            booster_params.update(objective="multi:softprob", num_class=context.n_classes, eval_metric="mlogloss")
        else:
            booster_params.update(objective="reg:squarederror", eval_metric="rmse")
        for key, value in params.items():
            booster_params[ALIASES.get(key) or key] = value
        train_matrix = self._matrix(train, y_train)
        # Only the validation split is evaluated per round: scoring the training set every round costs ~10%.
        evals = [(self._matrix(validation, y_validation), "validation")] if validation is not None else []
        try:
            self.booster = xgb.train(
                booster_params, train_matrix, num_boost_round=rounds, evals=evals,
                early_stopping_rounds=early if validation is not None and early else None, verbose_eval=False,
            )
        except xgb.core.XGBoostError as exc:
            raise TrainingError(f"XGBoost could not train with model.params {context.params}: {str(exc).splitlines()[0]}") from None
        best = getattr(self.booster, "best_iteration", None)
        self.best_iteration = int(best) if best is not None and validation is not None and early else None
        return {"num_boost_round": rounds, "best_iteration": self.best_iteration, "nthread": machine_threads()}

    def _raw(self, data: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self._matrix(data), iteration_range=self._iteration_range())

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return self._raw(data)

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        import numpy as np

        raw = self._raw(data)
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw

    def predict_proba_columns(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities (or values, for regression) of numeric feature columns in feature order.

        Predicted in pieces of at most `PIECE_ROWS` rows on one thread per core, each piece by a single-threaded
        copy of the booster. XGBoost's own threads split a call evenly, so whenever another thread of the
        process takes a core (batch inference reads and writes beside the prediction), the other XGBoost
        thread waits at the barrier; pieces from a shared pool keep every core busy. A piece's row-major
        copy fits in cache.
        """
        import numpy as np

        booster = self._single_threaded_booster()
        limit = self._iteration_range()
        rows = len(columns[0])
        # Binary: each piece fills its rows of both class columns, column-major so that each goes to
        # Arrow without a copy.
        proba = np.empty((rows, 2), dtype=np.float32, order="F") if self._objective() == "binary:logistic" else None

        def piece(bounds: tuple[int, int]) -> np.ndarray | None:
            start, stop = bounds
            matrix = np.empty((stop - start, len(columns)), dtype=np.float32)
            for position, column in enumerate(columns):
                matrix[:, position] = column[start:stop]
            raw = booster.inplace_predict(matrix, iteration_range=limit)
            if proba is None:
                return raw
            proba[start:stop, 1] = raw
            np.subtract(1.0, raw, out=proba[start:stop, 0])
            return None

        pieces = list(_piece_pool().map(piece, _piece_bounds(rows, machine_threads())))
        return proba if proba is not None else np.concatenate(pieces)

    def _iteration_range(self) -> tuple[int, int]:
        return (0, self.best_iteration + 1) if self.best_iteration is not None else (0, 0)

    def _single_threaded_booster(self) -> Any:
        """`nthread` belongs to a booster, and the DataFrame predict path keeps every core."""
        source, copy = getattr(self, "_single_threaded", (None, None))
        if source is not self.booster:
            copy = self.booster.copy()
            copy.set_param({"nthread": 1})
            self._single_threaded = (self.booster, copy)
        return copy

    def _objective(self) -> str:
        if getattr(self, "_objective_name", None) is None:
            import json

            self._objective_name = json.loads(self.booster.save_config())["learner"]["objective"]["name"]
        return self._objective_name

    def save(self) -> bytes:
        return bytes(self.booster.save_raw(raw_format="ubj"))

    @classmethod
    def load(cls, data: bytes, metadata: dict[str, Any]) -> XGBoostTrainer:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        booster.set_param({"nthread": machine_threads()})
        categories = {c: metadata["features"]["categories"][c] for c in metadata["features"]["categories"]}
        return cls(booster, categories, metadata.get("info", {}).get("best_iteration"))

    def library_versions(self) -> dict[str, str]:
        import xgboost

        return {"xgboost": xgboost.__version__}
