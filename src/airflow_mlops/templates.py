"""Renamed `airflow_mlops.dag_factory`; this name keeps DAG files copied from earlier releases working."""

import warnings
from typing import Any

from airflow_mlops import dag_factory

warnings.warn(
    "airflow_mlops.templates is renamed airflow_mlops.dag_factory; change the import in your DAG file",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    return getattr(dag_factory, name)
