"""The model registry inside the Airflow UI: pages, a secured JSON API and the plugin that mounts them."""
