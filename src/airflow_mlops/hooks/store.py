"""The artifact store inside Airflow: S3 credentials come from an Amazon connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from airflow_mlops.storage import ArtifactStore


class ArtifactStoreHook(BaseHook):
    """Opens the artifact store at `artifact_root` (default: `AIRFLOW_MLOPS_HOME`).

    An `s3://bucket/prefix` root gets its boto3 client from the Amazon
    provider's S3Hook with `aws_conn_id` (default `aws_default`), so keys,
    roles and endpoints are managed as ordinary Airflow connections.
    """

    def __init__(self, artifact_root: str | None = None, aws_conn_id: str | None = "aws_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.artifact_root = artifact_root
        self.aws_conn_id = aws_conn_id

    def get_conn(self) -> ArtifactStore:
        from airflow_mlops.storage import artifact_root, open_store

        root = self.artifact_root or artifact_root()
        if not root.startswith("s3://"):
            return open_store(root)
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return open_store(root, s3_client=S3Hook(aws_conn_id=self.aws_conn_id).get_conn())
