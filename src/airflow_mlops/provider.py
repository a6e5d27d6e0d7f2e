"""Provider metadata Airflow reads through the `apache_airflow_provider` entry point."""

from __future__ import annotations

from typing import Any

from airflow_mlops import __version__

INTEGRATION = "airflow-mlops"
REGISTRY_CONN_TYPE = "mlops_registry"
REGISTRY_HOOK_NAME = "ML model registry (airflow-mlops)"

OPERATOR_MODULES = [
    "airflow_mlops.operators.validate",
    "airflow_mlops.operators.tune",
    "airflow_mlops.operators.train",
    "airflow_mlops.operators.evaluate",
    "airflow_mlops.operators.approval",
    "airflow_mlops.operators.promote",
    "airflow_mlops.operators.announce",
    "airflow_mlops.operators.inference",
    "airflow_mlops.operators.drift",
    "airflow_mlops.operators.monitor",
]


def get_provider_info() -> dict[str, Any]:
    # Airflow requires package-name to equal the distribution name. The UI plugin is not listed under
    # "plugins": Airflow loads provider plugins only with [core] lazy_discover_providers off, so the
    # package registers it through its `airflow.plugins` entry point, and listing it here as well
    # would register it twice where providers load eagerly.
    return {
        "package-name": "airflow-mlops",
        "name": "airflow-mlops",
        "description": "Operators and DAG templates for the whole life of a tabular ML model.",
        "versions": [__version__],
        "integrations": [{"integration-name": INTEGRATION, "tags": ["ml", "model-registry", "monitoring"]}],
        "operators": [{"integration-name": INTEGRATION, "python-modules": OPERATOR_MODULES}],
        "hooks": [{"integration-name": INTEGRATION,
                   "python-modules": ["airflow_mlops.hooks.registry", "airflow_mlops.hooks.store"]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["airflow_mlops.triggers.alias_history"]}],
        "notifications": [
            "airflow_mlops.operators.alerts.PipelineAlertNotifier",
            "airflow_mlops.operators.alerts.FailureAlert",
        ],
        # Declared here rather than by hook methods (deprecated since Airflow 3.2), so the UI builds
        # the form without importing the hook.
        "connection-types": [
            {
                "hook-class-name": "airflow_mlops.hooks.registry.MlopsRegistryHook",
                "connection-type": REGISTRY_CONN_TYPE,
                "hook-name": REGISTRY_HOOK_NAME,
                "conn-fields": {
                    "url": {
                        "label": "SQLAlchemy URL",
                        "description": "The whole registry URL (postgresql+psycopg2://user:password@host/db); "
                                       "when set, host, port, database, login and password are not used.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "dialect": {
                        "label": "Dialect",
                        "description": "The SQLAlchemy driver for host/port/database/login/password.",
                        "schema": {"type": ["string", "null"], "default": "postgresql+psycopg2"},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"schema": "Database"},
                    "placeholders": {"host": "postgres.internal", "schema": "mlops", "port": "5432"},
                },
            }
        ],
        "extra-links": [
            "airflow_mlops.operators.links.ReportLink",
            "airflow_mlops.operators.links.ModelVersionLink",
        ],
    }
