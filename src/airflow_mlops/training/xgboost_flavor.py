"""XGBoost flavor: native training with early stopping, categorical features, UBJ on disk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import TrainingError
from airflow_mlops.training.base import FitContext, machine_threads

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ALIASES = {"learning_rate": "eta", "n_estimators": None, "early_stopping_rounds": None, "random_state": "seed"}


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
        limit = (0, self.best_iteration + 1) if self.best_iteration is not None else (0, 0)
        return self.booster.predict(self._matrix(data), iteration_range=limit)

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return self._raw(data)

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        import numpy as np

        raw = self._raw(data)
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw

    def predict_proba_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities (or values, for regression) straight from a float32 matrix: no DMatrix, no pandas."""
        import numpy as np

        limit = (0, self.best_iteration + 1) if self.best_iteration is not None else (0, 0)
        raw = self.booster.inplace_predict(matrix, iteration_range=limit)
        if raw.ndim == 1 and self._objective() == "binary:logistic":
            # Column-major, so each class's column is contiguous and goes to Arrow without a copy.
            proba = np.empty((len(raw), 2), dtype=raw.dtype, order="F")
            proba[:, 1] = raw
            np.subtract(1.0, raw, out=proba[:, 0])
            return proba
        return raw

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
