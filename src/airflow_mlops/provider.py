"""Provider metadata Airflow reads through the `apache_airflow_provider` entry point."""

from __future__ import annotations

from typing import Any

from airflow_mlops import __version__


def get_provider_info() -> dict[str, Any]:
    # Airflow requires package-name to equal the distribution name.
    return {
        "package-name": "airflow-mlops",
        "name": "airflow-mlops",
        "description": "Operators and DAG templates for the whole life of a tabular ML model.",
        "versions": [__version__],
        # Makes "ML model registry (airflow-mlops)" a connection type in the UI's form.
        "connection-types": [
            {
                "hook-class-name": "airflow_mlops.hooks.registry.MlopsRegistryHook",
                "connection-type": "mlops_registry",
            }
        ],
        "extra-links": [
            "airflow_mlops.operators.links.ReportLink",
            "airflow_mlops.operators.links.ModelVersionLink",
        ],
    }
