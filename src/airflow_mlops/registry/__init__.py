"""The model registry: versions with lineage, aliases with history and rollback (SQLite or PostgreSQL)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "UNCHECKED",
    "AliasEvent",
    "Approval",
    "DriftRecord",
    "EvaluationRecord",
    "ModelRegistry",
    "ModelVersion",
    "PerformanceRecord",
    "RegisteredModel",
    "ScoringRun",
    "default_registry_url",
]


def __getattr__(name: str) -> Any:
    # Lazy: DAG files import airflow_mlops modules that mention the registry; SQLAlchemy loads on use.
    if name in {"ModelRegistry", "UNCHECKED"}:
        from airflow_mlops.registry import api

        return getattr(api, name)
    if name == "default_registry_url":
        from airflow_mlops.registry import engine

        return engine.default_registry_url
    if name in {
        "AliasEvent", "Approval", "DriftRecord", "EvaluationRecord", "ModelVersion", "PerformanceRecord", "RegisteredModel",
        "ScoringRun",
    }:
        from airflow_mlops.registry import records

        return getattr(records, name)
    raise AttributeError(name)
