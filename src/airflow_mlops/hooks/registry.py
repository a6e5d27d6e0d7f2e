"""The model registry as an Airflow connection (`mlops_registry`, type `mlops_registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_mlops.provider import REGISTRY_CONN_TYPE, REGISTRY_HOOK_NAME

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
    conn_type = REGISTRY_CONN_TYPE
    hook_name = REGISTRY_HOOK_NAME

    def __init__(self, mlops_registry_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlops_registry_conn_id = mlops_registry_conn_id

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

    def test_connection(self) -> tuple[bool, str]:
        """Connect and compare the database's schema revision with this package's (the UI's Test button).

        Never migrates: an empty or older database is reported, for `airflow-mlops db upgrade` to fix.
        """
        from airflow_mlops.registry import migrate
        from airflow_mlops.registry.engine import registry_engine

        try:
            url = self.get_url()
            if url is None:
                return False, f"no connection {self.mlops_registry_conn_id!r}: tasks use the embedded SQLite registry"
            engine = registry_engine(url)
            try:
                current = migrate.current_revision(engine)
            finally:
                engine.dispose()
        except Exception as exc:  # the Test button shows any failure as its message
            return False, f"cannot reach the registry: {exc}"
        head = migrate.head_revision()
        if current is None:
            return False, "connected, but the database has no registry schema: run `airflow-mlops db upgrade --db URL`"
        if current != head:
            return False, f"connected, but the schema is at revision {current} and this package needs {head}: " \
                          "run `airflow-mlops db upgrade --db URL`"
        return True, f"connected; registry schema at revision {head}"
