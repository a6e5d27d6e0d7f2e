"""The model registry as an Airflow connection (`mlops_registry`, type `mlops_registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from airflow_mlops.registry import ModelRegistry


class MlopsRegistryHook(BaseHook):
    """Builds a `ModelRegistry` from the `mlops_registry` connection.

    The connection holds a SQLAlchemy URL, either whole in the extra field
    `{"url": "postgresql+psycopg2://..."}` or spread over host, port, schema
    (the database), login and password with the dialect in `{"dialect": ...}`.
    Without the connection the embedded SQLite registry under the artifact
    root is used, which suits one machine; several workers need PostgreSQL.
    """

    conn_name_attr = "mlops_registry_conn_id"
    default_conn_name = "mlops_registry"
    conn_type = "mlops_registry"
    hook_name = "ML model registry (airflow-mlops)"

    def __init__(self, mlops_registry_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlops_registry_conn_id = mlops_registry_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Database"},
            "placeholders": {
                "host": "postgres.internal",
                "schema": "mlops",
                "extra": '{"dialect": "postgresql+psycopg2"}  or  {"url": "postgresql+psycopg2://user:pw@host/db"}',
            },
        }

    def get_url(self) -> str | None:
        """The registry's SQLAlchemy URL, or None for the embedded default."""
        from airflow.sdk.exceptions import AirflowNotFoundException
        from sqlalchemy.engine import URL

        try:
            conn = self.get_connection(self.mlops_registry_conn_id)
        except AirflowNotFoundException:
            return None
        extra = conn.extra_dejson
        if extra.get("url"):
            return str(extra["url"])
        if not conn.host:
            raise ValueError(
                f"connection {self.mlops_registry_conn_id!r} needs a host or an extra 'url' with a SQLAlchemy URL"
            )
        return URL.create(
            drivername=extra.get("dialect", "postgresql+psycopg2"),
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host,
            port=conn.port or None,
            database=conn.schema or None,
        ).render_as_string(hide_password=False)

    def get_conn(self) -> ModelRegistry:
        from airflow_mlops.registry import ModelRegistry

        return ModelRegistry(self.get_url())
