"""Helpers the steps share: the current champion, loading a version, checked locations, test metrics."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)


def alias_version(registry: ModelRegistry, name: str, alias: str) -> int | None:
    try:
        return registry.resolve(name, alias).version
    except NotFoundError:
        return None


def load_version(registry: ModelRegistry, store: ArtifactStore, name: str, version: int) -> Any:
    from airflow_mlops.training import load_model

    record = registry.get_version(name, version)
    return load_model(record.artifact_uri, store, expected_sha256=record.artifact_sha256)


def checked_location(value: str, field: str) -> str:
    """A location given at trigger time meets the pipeline file's rules (no climbing out of the root)."""
    from airflow_mlops.config.schema import check_location

    try:
        check_location(value)
    except ValueError as exc:
        raise ConfigError(f"{field}: {exc}") from None
    return value


def test_metrics(registry: ModelRegistry, name: str, version: int) -> dict[str, Any]:
    """The version's own held-out test metrics: its latest evaluation record's (empty when never evaluated)."""
    evaluations = registry.evaluations(name, version)
    return dict(evaluations[-1].metrics) if evaluations else {}
