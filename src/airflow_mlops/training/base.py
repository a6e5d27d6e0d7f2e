"""One `Trainer` protocol over three flavors, and the model bundle every flavor saves.

A bundle is two objects under one prefix: the model file (skops, XGBoost UBJ or
a torch state_dict) and `metadata.json` (flavor, task, library versions,
features with dtypes and categories, target, classes, params, seed, and the
model file's sha256). The registry holds the sha256 of `metadata.json`, which
holds the model file's: loading checks both before anything is deserialized.
"""

from __future__ import annotations

import importlib
import logging
import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from airflow_mlops import dotted
from airflow_mlops.data.checks import require_finite_features, require_labelled_rows
from airflow_mlops.errors import DataError, TrainingError
from airflow_mlops.refs import ArtifactRef
from airflow_mlops.training.features import (
    FeatureSpec,
    LabelCoder,
    feature_columns,
    how_to_exclude,
    require_classifier,
    uninformative_features,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Future

    import numpy as np
    import pandas as pd

    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)

METADATA = "metadata.json"
TRAIN_METRIC_ROWS = 50_000
FLAVORS = {
    "sklearn": "airflow_mlops.training.sklearn_flavor:SklearnTrainer",
    "xgboost": "airflow_mlops.training.xgboost_flavor:XGBoostTrainer",
    "torch": "airflow_mlops.training.torch_flavor:TorchTrainer",
}


@dataclass
class FitContext:
    """Everything a trainer needs besides the data."""

    task: str
    n_classes: int
    params: dict[str, Any]
    seed: int
    spec: FeatureSpec
    estimator: str | None = None
    device: str = "auto"
    store: ArtifactStore | None = None
    checkpoint_prefix: str | None = None
    # Called after each boosting round (xgboost) or epoch (torch) with the validation loss; tuning
    # reports it to the pruner, and stops the fit by raising.
    on_round: Callable[[int, float], None] | None = None


class Trainer(Protocol):
    """What each flavor implements. Inputs are `FeatureSpec.frame` outputs; labels are codes 0..k-1."""

    flavor: str
    model_file: str

    def fit(self, train: pd.DataFrame, y_train: np.ndarray, validation: pd.DataFrame | None,
            y_validation: np.ndarray | None, context: FitContext) -> dict[str, Any]: ...

    def predict(self, data: pd.DataFrame) -> np.ndarray: ...

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray: ...

    def save(self) -> bytes: ...

    @classmethod
    def load(cls, data: bytes, metadata: dict[str, Any]) -> Trainer: ...

    def library_versions(self) -> dict[str, str]: ...


def trainer_class(flavor: str) -> type:
    if flavor not in FLAVORS:
        raise TrainingError(f"unknown flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
    module, _, name = FLAVORS[flavor].partition(":")
    return getattr(importlib.import_module(module), name)


def import_object(path: str, what: str) -> Any:
    """Import `package.module.Name` named in the pipeline file; a TrainingError names it when it does not."""
    return dotted.import_object(path, what, TrainingError)


@dataclass
class TrainedModel:
    """What `train_model` returns; `artifact` is what the registry records."""

    artifact: ArtifactRef
    model_uri: str
    metadata: dict[str, Any]
    params: dict[str, Any]
    train_metrics: dict[str, float] = field(default_factory=dict)
    validation_metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class LoadedModel:
    """A verified, deserialized model: predicts on DataFrames with the original labels."""

    def __init__(self, trainer: Trainer, metadata: dict[str, Any]) -> None:
        self.trainer = trainer
        self.metadata = metadata
        self.spec = FeatureSpec.from_dict(metadata["features"])
        self.labels = LabelCoder(metadata.get("classes"))

    @property
    def task(self) -> str:
        return self.metadata["task"]

    @property
    def flavor(self) -> str:
        return self.metadata["flavor"]

    @property
    def classes(self) -> list[Any] | None:
        return self.labels.classes

    @property
    def feature_names(self) -> list[str]:
        return list(self.spec.features)

    def check_features(self, columns: dict[str, str]) -> None:
        self.spec.check_columns(columns)

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        frame = self.spec.frame(data)
        if len(frame) == 0:  # scikit-learn refuses an empty matrix: no rows, no predictions
            return self._empty_predictions()[0]
        if self.task == "regression":
            return self.trainer.predict(frame)
        return self.labels.decode(self.trainer.predict_proba(frame).argmax(axis=1))

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        require_classifier(self.task)
        frame = self.spec.frame(data)
        if len(frame) == 0:
            return self._empty_predictions()[1]
        return self.trainer.predict_proba(frame)

    def contributions(self, data: pd.DataFrame) -> np.ndarray | None:
        """Each feature's contribution to each row's raw prediction (log-odds for classifiers), shaped
        rows x [classes x] features; None for a flavor without native contributions (only xgboost has them)."""
        native = getattr(self.trainer, "contributions", None)
        return None if native is None else native(self.spec.frame(data))[..., :-1]

    def _empty_predictions(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, probabilities or None) for zero rows, shaped as for any other batch."""
        import numpy as np

        if self.task == "regression":
            return np.empty(0, dtype=np.float32), None
        return self.labels.decode(np.empty(0, dtype=np.int64)), np.empty((0, len(self.classes or [])), dtype=np.float32)

    def predict_columns(self, columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, probabilities or None) for all-numeric feature columns in feature order.

        The batch-inference fast path: flavors with a native column API skip the feature frame.
        """
        return self.start_columns(columns).result()

    def start_columns(self, columns: Sequence[np.ndarray]) -> PendingPrediction:
        """`predict_columns`, started: a flavor that predicts on threads of its own (xgboost) returns at
        once, so the caller can start the next batch before waiting on this one; others predict here."""
        import pandas as pd

        if len(columns[0]) == 0:  # scikit-learn refuses an empty matrix
            return PendingPrediction.done(self._empty_predictions())
        native = getattr(self.trainer, "start_proba_columns", None)
        if native is None:
            frame = self.spec.frame(pd.DataFrame(dict(zip(self.spec.features, columns, strict=True)), copy=False))
            if self.task == "regression":
                return PendingPrediction.done((self.trainer.predict(frame), None))
            return PendingPrediction.done(self._with_labels(self.trainer.predict_proba(frame)))
        # The frame path checks inside spec.frame; the native path skips the frame, so check here.
        require_finite_features(zip(self.spec.features, columns, strict=True), "the data")
        if self.task == "regression":
            return native(columns).then(lambda values: (values, None))
        return native(columns).then(self._with_labels)

    def _with_labels(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        if proba.shape[1] == 2:
            # A comparison is argmax (ties go to the first class, as argmax does) without the scan or the lookup.
            first, second = self.labels.decode(np.arange(2))
            return np.where(proba[:, 1] > proba[:, 0], second, first), proba
        return self.labels.decode(proba.argmax(axis=1)), proba


class PendingPrediction:
    """A prediction started on a flavor's threads: `result()` waits for its pieces and assembles them;
    `cancel()` drops the pieces that have not started (after an error, nobody will ask for the result)."""

    def __init__(self, futures: list[Future], assemble: Callable[[list[Any]], Any]) -> None:
        self._futures, self._assemble = futures, assemble

    @classmethod
    def done(cls, value: Any) -> PendingPrediction:
        return cls([], lambda _: value)

    def then(self, convert: Callable[[Any], Any]) -> PendingPrediction:
        return PendingPrediction(self._futures, lambda pieces: convert(self._assemble(pieces)))

    def result(self) -> Any:
        return self._assemble([future.result() for future in self._futures])

    def cancel(self) -> None:
        for future in self._futures:
            future.cancel()


def _library_versions(trainer: Trainer) -> dict[str, str]:
    import numpy
    import pandas

    return {"python": platform.python_version(), "numpy": numpy.__version__, "pandas": pandas.__version__,
            **trainer.library_versions()}


@dataclass
class FittedModel:
    """What `fit_model` returns: the model in memory, before anything is saved."""

    model: LoadedModel
    params: dict[str, Any]
    info: dict[str, Any]


def fit_model(
    config: PipelineConfig,
    train: pd.DataFrame,
    validation: pd.DataFrame | None,
    *,
    store: ArtifactStore | None = None,
    checkpoint_prefix: str | None = None,
    params_override: dict[str, Any] | None = None,
    on_round: Callable[[int, float], None] | None = None,
) -> FittedModel:
    """Check the data and fit the configured flavor on `train` (early stopping on `validation`)."""
    model = config.model
    target = config.data.target
    # Every check on the data comes before the fit, so bad data never leaves a checkpoint or model file behind.
    require_labelled_rows(train, target, "the training data")
    features = feature_columns(config, [str(c) for c in train.columns])
    if not features:
        ids = f" and the ids {', '.join(map(repr, config.data.ids))}" if config.data.ids else ""
        raise DataError(f"the training data has no feature columns besides the target {target!r}{ids}")
    spec = FeatureSpec.from_frame(train, features, None if config.data.categorical == "auto" else list(config.data.categorical))
    empty, constant = uninformative_features(train, spec)
    if empty:
        raise DataError(
            f"feature{'s' if len(empty) > 1 else ''} {', '.join(map(repr, empty))} "
            f"{'have' if len(empty) > 1 else 'has'} no values (missing in all {len(train)} training rows); "
            f"{how_to_exclude(config, empty)}"
        )
    if constant:
        # Harmless to every flavor, and a retrain must not stop because a rare flag was all zeros this time.
        log.warning("feature%s %s %s the same value in every training row and cannot help the model; to drop: %s",
                    "s" if len(constant) > 1 else "", ", ".join(map(repr, constant)),
                    "have" if len(constant) > 1 else "has", how_to_exclude(config, constant))
    labels = LabelCoder.fit(train[target], model.task)
    params = {**model.params, **(params_override or {})}
    context = FitContext(
        task=model.task, n_classes=len(labels.classes or []), params=params, seed=model.seed, spec=spec,
        estimator=model.estimator, device=model.device, store=store, checkpoint_prefix=checkpoint_prefix,
        on_round=on_round,
    )
    trainer = trainer_class(model.flavor)()
    y_train = labels.encode(train[target])
    x_train = spec.frame(train, "the training data")
    has_validation = validation is not None and len(validation) > 0
    if has_validation:
        require_labelled_rows(validation, target, "the validation data")
    x_validation = spec.frame(validation, "the validation data") if has_validation else None
    y_validation = labels.encode(validation[target]) if has_validation else None
    info = trainer.fit(x_train, y_train, x_validation, y_validation, context)
    if constant:
        info = {**info, "constant_features": constant}
    loaded = LoadedModel(trainer, {"task": model.task, "flavor": model.flavor, "features": spec.to_dict(), "classes": labels.classes})
    return FittedModel(model=loaded, params=params, info=info)


def train_model(
    config: PipelineConfig,
    train: pd.DataFrame,
    validation: pd.DataFrame | None,
    store: ArtifactStore,
    *,
    output_prefix: str,
    checkpoint_prefix: str | None = None,
    params_override: dict[str, Any] | None = None,
) -> TrainedModel:
    """Fit the configured flavor on `train` (early stopping on `validation`) and save the bundle."""
    from airflow_mlops.evaluation.metrics import compute_metrics

    fitted = fit_model(config, train, validation, store=store, checkpoint_prefix=checkpoint_prefix,
                       params_override=params_override)
    model, target = config.model, config.data.target
    loaded, params, info = fitted.model, fitted.params, fitted.info
    trainer, spec, labels = loaded.trainer, loaded.spec, loaded.labels
    has_validation = validation is not None and len(validation) > 0
    metric_names = list(config.evaluation.metrics or [])
    # Train metrics only feed the overfitting guard: a seeded sample keeps them cheap on big tables.
    train_sample = train.sample(n=TRAIN_METRIC_ROWS, random_state=model.seed) if len(train) > TRAIN_METRIC_ROWS else train
    train_metrics = _score(loaded, train_sample, target, metric_names, compute_metrics)
    validation_metrics = _score(loaded, validation, target, metric_names, compute_metrics) if has_validation else {}

    model_bytes = trainer.save()
    model_ref = store.write_bytes(f"{output_prefix.rstrip('/')}/{trainer.model_file}", model_bytes)
    metadata = {
        "format": 1,
        "flavor": model.flavor,
        "task": model.task,
        "target": target,
        "classes": labels.classes,
        "features": spec.to_dict(),
        "params": params,
        "estimator": model.estimator,
        "seed": model.seed,
        "model_file": trainer.model_file,
        "model_sha256": model_ref.sha256,
        "library_versions": _library_versions(trainer),
        "train_rows": len(train),
        "info": info,
    }
    artifact = store.write_json(f"{output_prefix.rstrip('/')}/{METADATA}", metadata)
    return TrainedModel(artifact=artifact, model_uri=artifact.uri, metadata=metadata, params=params,
                        train_metrics=train_metrics, validation_metrics=validation_metrics, info=info)


def _score(model: LoadedModel, frame: pd.DataFrame, target: str, names: list[str], compute: Any) -> dict[str, float]:
    if model.task == "regression":
        proba, predictions = None, model.predict(frame)
    else:
        proba = model.predict_proba(frame)
        predictions = model.labels.decode(proba.argmax(axis=1))
    return compute(model.task, names, frame[target].to_numpy(), predictions, proba, model.classes)


def load_model(uri: str, store: ArtifactStore, *, expected_sha256: str) -> LoadedModel:
    """Load a bundle after verifying it: a tampered file raises IntegrityError, never deserialized."""
    metadata = store.read_json(uri, expected_sha256=expected_sha256)
    folder = uri.rsplit("/", 1)[0]
    data = store.read_bytes(f"{folder}/{metadata['model_file']}", expected_sha256=metadata["model_sha256"])
    trainer = trainer_class(metadata["flavor"]).load(data, metadata)
    return LoadedModel(trainer, metadata)
