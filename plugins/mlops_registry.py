"""The registry UI plugin for this project's Airflow (pip installs get it from the `airflow.plugins` entry point)."""

from airflow_mlops.ui.plugin import MlopsRegistryPlugin

__all__ = ["MlopsRegistryPlugin"]
