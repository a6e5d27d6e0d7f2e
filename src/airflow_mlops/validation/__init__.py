"""Data validation with Great Expectations 1.x, returning the shared GateResult."""

from __future__ import annotations

from typing import Any

__all__ = ["expectations_yaml", "scoring_checks", "suggest_expectations", "validate_dataframe", "validate_dataset"]


def __getattr__(name: str) -> Any:
    if name in {"validate_dataframe", "validate_dataset", "scoring_checks"}:
        from airflow_mlops.validation import core

        return getattr(core, name)
    if name in {"suggest_expectations", "expectations_yaml"}:
        from airflow_mlops.validation import suggest

        return getattr(suggest, name)
    raise AttributeError(name)
