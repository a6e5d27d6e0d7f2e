"""Feature columns, their kinds and categories, and label encoding: saved with every model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.data.checks import require_finite_features, require_unique_columns
from airflow_mlops.errors import DataError, TrainingError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from airflow_mlops.config import PipelineConfig

NUMERIC_KINDS = "iufb"


def feature_columns(config: PipelineConfig, columns: list[str]) -> list[str]:
    """'all' = every column but the target, the ids and the sensitive columns of evaluation.fairness (kept in the
    data for evaluation, never used by the model unless `as_features`); a list is checked against the data."""
    data = config.data
    if data.features == "all":
        excluded = {data.target, *data.ids, *config.sensitive_columns()}
        return [c for c in columns if c not in excluded]
    missing = [c for c in data.features if c not in columns]
    if missing:
        raise DataError(f"data.features: column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not in the data")
    return list(data.features)


def how_to_exclude(config: PipelineConfig, columns: list[str]) -> str:
    """The config change that leaves `columns` out of the features."""
    named = ", ".join(map(repr, columns))
    if config.data.features == "all":
        return f"set data.features to the list of columns to use, without {named} (it is 'all' now)"
    return f"remove {named} from data.features"


def uninformative_features(frame: pd.DataFrame, spec: FeatureSpec) -> tuple[list[str], list[str]]:
    """(features with no value in any row, features with the same value in every row).

    A feature that is missing in some rows is never constant: whether it is missing is information.
    """
    empty, constant = [], []
    for column in spec.features:
        series = frame[column]
        present = int(series.count())
        if present == 0:
            empty.append(column)
        elif present == len(series):
            categories = spec.categories.get(column)
            if (len(categories) == 1) if categories is not None else bool(series.min() == series.max()):
                constant.append(column)
    return empty, constant


def _categorical_setting(config: PipelineConfig) -> list[str] | None:
    return None if config.data.categorical == "auto" else list(config.data.categorical)


@dataclass
class FeatureSpec:
    """What a model expects at scoring time: names, dtypes, kinds and the training categories."""

    features: list[str]
    dtypes: dict[str, str]
    kinds: dict[str, str]
    categories: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, features: list[str], categorical: list[str] | None) -> FeatureSpec:
        kinds: dict[str, str] = {}
        categories: dict[str, list[Any]] = {}
        for column in features:
            series = frame[column]
            if categorical is not None:
                kind = "categorical" if column in categorical else "numeric"
            else:
                kind = "numeric" if series.dtype.kind in NUMERIC_KINDS else "categorical"
            if kind == "numeric" and series.dtype.kind not in NUMERIC_KINDS:
                raise DataError(f"feature {column!r} is {series.dtype} but is treated as numeric; list it in data.categorical")
            if series.dtype.kind == "M":
                raise DataError(f"feature {column!r} is a datetime column; derive numeric features from it first")
            kinds[column] = kind
            if kind == "categorical":
                values = series.dropna().astype(str).unique().tolist()
                categories[column] = sorted(values)
        return cls(features=list(features), dtypes={c: str(frame[c].dtype) for c in features}, kinds=kinds,
                   categories=categories)

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.features if self.kinds[c] == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [c for c in self.features if self.kinds[c] == "categorical"]

    def check_columns(self, columns: dict[str, str]) -> None:
        """Raise DataError naming missing features and features of an unusable dtype."""
        import numpy as np

        missing = [c for c in self.features if c not in columns]
        if missing:
            raise DataError(
                f"missing feature column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; "
                f"the model was trained on {', '.join(map(repr, self.features))}"
            )
        wrong = []
        for column in self.numeric:
            try:
                kind = np.dtype(columns[column]).kind
            except TypeError:
                kind = "O"
            if kind not in NUMERIC_KINDS:
                wrong.append(f"{column!r} is {columns[column]}, expected a number like {self.dtypes[column]}")
        if wrong:
            raise DataError("wrong feature dtype: " + "; ".join(wrong))

    def frame(self, data: pd.DataFrame, source: str = "the data") -> pd.DataFrame:
        """The feature columns in training order, categoricals as strings (missing stays missing).

        Raises DataError, naming `source`, for duplicate column names and for inf or -inf in a numeric feature.
        """
        if not data.columns.is_unique:  # cached by pandas: free on the scoring path
            require_unique_columns(data.columns, source)
        self.check_columns({c: str(data[c].dtype) for c in data.columns})
        out = data[self.features]  # a list selection is already a new frame
        require_finite_features(((c, out[c].to_numpy()) for c in self.numeric), source)
        if self.categorical or any(out[c].dtype.kind != "f" for c in self.numeric):
            out = out.copy()  # columns are replaced below: never write into a view of the caller's data
        for column in self.categorical:
            out[column] = out[column].astype("string").astype(object).where(out[column].notna(), None)
        for column in self.numeric:
            if out[column].dtype.kind != "f":  # floats keep their width: no float64 copy of float32 data
                out[column] = out[column].astype("float64")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(**data)


@dataclass
class LabelCoder:
    """Maps class labels of any type to 0..k-1 and back (None for regression)."""

    classes: list[Any] | None

    @classmethod
    def fit(cls, target: pd.Series, task: str) -> LabelCoder:
        if task == "regression":
            if target.dtype.kind not in "iuf":
                raise DataError(f"regression needs a numeric target; {target.name!r} is {target.dtype}")
            return cls(None)
        classes = sorted(target.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
        classes = [c.item() if hasattr(c, "item") else c for c in classes]
        if len(classes) < 2:
            raise DataError(
                f"the target {target.name!r} has only one class ({', '.join(map(repr, classes)) or 'no values'}) "
                f"in {len(target)} rows; a classifier needs two or more: check that data.target names the label "
                "column and that the data was not filtered down to one class"
            )
        if task == "binary_classification" and len(classes) != 2:
            raise DataError(
                f"binary_classification needs exactly 2 classes; {target.name!r} has {len(classes)}: "
                f"{', '.join(map(repr, classes[:10]))} (use multiclass_classification)"
            )
        return cls(classes)

    def encode(self, target: pd.Series) -> np.ndarray:
        import numpy as np

        if self.classes is None:
            return target.to_numpy(dtype="float64")
        import pandas as pd

        codes = pd.Categorical(target, categories=self.classes).codes.astype(np.int64)
        if (codes < 0).any():
            unknown = sorted({repr(v) for v in target[codes < 0].unique()})
            raise DataError(f"target values {', '.join(unknown[:5])} were not seen in training")
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        import numpy as np

        if self.classes is None:
            return codes
        return np.asarray(self.classes)[codes]


def require_classifier(task: str) -> None:
    if task == "regression":
        raise TrainingError("predict_proba is only defined for classifiers; this model does regression")
