"""Evaluation: metrics by task, slices, a baseline, and the champion/challenger gate."""

from __future__ import annotations

from typing import Any

__all__ = ["Evaluation", "compute_metrics", "evaluate_candidate", "greater_is_better"]


def __getattr__(name: str) -> Any:
    if name in {"Evaluation", "evaluate_candidate"}:
        from airflow_mlops.evaluation import gate

        return getattr(gate, name)
    if name in {"compute_metrics", "greater_is_better"}:
        from airflow_mlops.evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(name)
