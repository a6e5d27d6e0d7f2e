"""Artifact store: one interface over a local folder and S3, atomic writes, sha256 on everything."""

from __future__ import annotations

from typing import Any

from airflow_mlops.storage.base import (
    ArtifactStore,
    artifact_root,
    sha256_bytes,
    sha256_file,
)
from airflow_mlops.storage.keys import climbs_out, ensure_within, is_within, safe_key
from airflow_mlops.storage.local import LocalArtifactStore
from airflow_mlops.storage.s3 import S3ArtifactStore


def open_store(root: str | None = None, *, s3_client: Any = None) -> ArtifactStore:
    """The store at `root` (default: the artifact root); `s3://bucket/prefix` opens S3."""
    root = root or artifact_root()
    if root.startswith("s3://"):
        return S3ArtifactStore(root, client=s3_client)
    return LocalArtifactStore(root)


__all__ = [
    "ArtifactStore",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "artifact_root",
    "climbs_out",
    "ensure_within",
    "is_within",
    "open_store",
    "safe_key",
    "sha256_bytes",
    "sha256_file",
]
