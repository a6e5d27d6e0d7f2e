"""Training: one Trainer protocol over scikit-learn, XGBoost and PyTorch; verified model bundles."""

from __future__ import annotations

from typing import Any

__all__ = ["FeatureSpec", "LoadedModel", "PendingPrediction", "TrainedModel", "Trainer", "feature_columns", "load_model", "train_model"]


def __getattr__(name: str) -> Any:
    if name in {"LoadedModel", "PendingPrediction", "TrainedModel", "Trainer", "load_model", "train_model"}:
        from airflow_mlops.training import base

        return getattr(base, name)
    if name in {"FeatureSpec", "feature_columns"}:
        from airflow_mlops.training import features

        return getattr(features, name)
    raise AttributeError(name)
