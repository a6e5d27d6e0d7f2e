"""Airflow hooks: the registry from the `mlops_registry` connection, the artifact store from `aws_default`."""

from airflow_mlops.hooks.registry import MlopsRegistryHook
from airflow_mlops.hooks.store import ArtifactStoreHook

__all__ = ["ArtifactStoreHook", "MlopsRegistryHook"]
