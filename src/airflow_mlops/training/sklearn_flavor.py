"""scikit-learn flavor: any estimator by import path, preprocessing saved inside, skops on disk."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import IntegrityError, TrainingError
from airflow_mlops.training.base import FitContext, import_object

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DEFAULT_ESTIMATORS = {
    "binary_classification": "sklearn.ensemble.HistGradientBoostingClassifier",
    "multiclass_classification": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
}
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.", "functools.partial")


class SklearnTrainer:
    """A Pipeline of (imputation + scaling | one-hot encoding) and the configured estimator."""

    flavor = "sklearn"
    model_file = "model.skops"

    def __init__(self, pipeline: Any = None) -> None:
        self.pipeline = pipeline

    def fit(self, train: pd.DataFrame, y_train: np.ndarray, validation: pd.DataFrame | None,
            y_validation: np.ndarray | None, context: FitContext) -> dict[str, Any]:
        from sklearn.base import is_classifier, is_regressor
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        path = context.estimator or DEFAULT_ESTIMATORS[context.task]
        estimator_class = import_object(path, "model.estimator")
        if not inspect.isclass(estimator_class):
            raise TrainingError(f"model.estimator {path!r} is not a class")
        params = dict(context.params)
        if "random_state" in inspect.signature(estimator_class).parameters and "random_state" not in params:
            params["random_state"] = context.seed
        try:
            estimator = estimator_class(**params)
        except TypeError as exc:
            raise TrainingError(f"model.params do not fit {path}: {exc}") from None
        wants = is_regressor if context.task == "regression" else is_classifier
        if not wants(estimator):
            kind = "a regressor" if context.task == "regression" else "a classifier"
            raise TrainingError(f"model.estimator {path} is not {kind}, as model.task {context.task} needs")
        spec = context.spec
        numeric = _numeric_steps(estimator, SimpleImputer, StandardScaler, make_pipeline)
        steps = []
        if spec.categorical or numeric != "passthrough":
            steps.append(("preprocess", ColumnTransformer(
                [
                    ("numeric", numeric, spec.numeric),
                    ("categorical", make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="__missing__"),
                        OneHotEncoder(handle_unknown="ignore", categories=[spec.categories[c] + ["__missing__"] for c in spec.categorical]),
                    ), spec.categorical),
                ],
                remainder="drop",
            )))
        # All-numeric data for an estimator that needs no preprocessing goes straight in: no copy.
        self.pipeline = Pipeline([*steps, ("estimator", estimator)])
        try:
            self.pipeline.fit(train, y_train)
        except ValueError as exc:
            raise TrainingError(f"{path} could not be trained: {exc}") from None
        return {"estimator": path, "estimator_params": {k: v for k, v in params.items() if _jsonable(v)}}

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict(data)

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        if not hasattr(self.pipeline, "predict_proba"):
            raise TrainingError(f"{type(self.pipeline[-1]).__name__} has no predict_proba")
        return self.pipeline.predict_proba(data)

    def save(self) -> bytes:
        import skops.io

        return skops.io.dumps(self.pipeline)

    @classmethod
    def load(cls, data: bytes, metadata: dict[str, Any]) -> SklearnTrainer:
        import skops.io

        extra = ()
        if metadata.get("estimator"):
            extra = (metadata["estimator"].rsplit(".", 1)[0] + ".",)
        untrusted = skops.io.get_untrusted_types(data=data)
        refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES + extra)]
        if refused:
            raise IntegrityError(f"the model file holds types that are not trusted: {', '.join(refused)}")
        return cls(skops.io.loads(data, trusted=untrusted))

    def library_versions(self) -> dict[str, str]:
        import sklearn
        import skops

        return {"scikit-learn": sklearn.__version__, "skops": skops.__version__}


def _numeric_steps(estimator: Any, imputer: Any, scaler: Any, make_pipeline: Any) -> Any:
    """Only the preprocessing the estimator needs: trees ignore scale, and some take missing values."""
    steps = []
    try:
        allows_nan = estimator.__sklearn_tags__().input_tags.allow_nan
    except AttributeError:
        allows_nan = False
    if not allows_nan:
        steps.append(imputer(strategy="mean", keep_empty_features=True))
    module = type(estimator).__module__
    if not module.startswith(("sklearn.ensemble", "sklearn.tree")):
        steps.append(scaler())
    return make_pipeline(*steps) if steps else "passthrough"


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))
