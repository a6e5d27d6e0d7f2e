"""The Airflow plugin: mounts the registry app at /mlops and adds it to the UI.

Loaded by every Airflow component, so it imports nothing heavy: the app is
built on its first request, in the api-server only.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_mlops.ui.app import URL_PREFIX, LazyApp


class MlopsRegistryPlugin(AirflowPlugin):
    name = "airflow_mlops_registry"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "ML model registry"}]
    external_views = [
        # The nav entry: the models page inside Airflow's frame.
        {"name": "ML models", "href": f"{URL_PREFIX}/models", "url_route": "mlops-models", "destination": "nav"},
        # A tab on every DAG run page: the model versions that run registered.
        {"name": "Model versions", "href": f"{URL_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}", "url_route": "mlops-run",
         "destination": "dag_run"},
    ]
