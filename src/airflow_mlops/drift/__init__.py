"""Drift checks with Evidently 0.7, returning the shared GateResult."""

from __future__ import annotations

from typing import Any

__all__ = ["DriftResult", "check_drift", "check_prediction_drift", "checked_columns", "sample_committed_output"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from airflow_mlops.drift import core

        return getattr(core, name)
    raise AttributeError(name)
