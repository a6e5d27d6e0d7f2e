"""Hyperparameter tuning with Optuna, its study kept in the registry's database (no Airflow import)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BatchOutcome",
    "TuningPlan",
    "TuningSummary",
    "create_study",
    "new_plan",
    "run_batch",
    "stored_plan",
    "study_name",
    "summarize_study",
    "trial_history",
    "validation_score",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from airflow_mlops.tuning import study

        return getattr(study, name)
    raise AttributeError(name)
