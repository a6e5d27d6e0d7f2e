"""The artifact store on S3 (or any S3 API: MinIO, moto) through boto3."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from airflow_mlops.errors import ArtifactNotFoundError, StorageError, UnknownSchemeError
from airflow_mlops.refs import ArtifactRef
from airflow_mlops.storage.base import (
    CHUNK,
    ArtifactStore,
    check_integrity,
    sha256_bytes,
    sha256_file,
)

MULTIPART_THRESHOLD = 8 * 1024 * 1024
# Small reads (a parquet footer, neighbouring small column chunks, csv blocks) are served
# from one ranged GET of this size; a larger read goes to S3 as one range of its own.
READ_BUFFER = 1024 * 1024


def default_s3_client() -> Any:
    """A boto3 S3 client with adaptive retries and backoff (credentials from the usual chain)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 10, "mode": "adaptive"}))


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise UnknownSchemeError(f"{uri}: expected an s3://bucket/key URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise UnknownSchemeError(f"{uri}: the S3 URI names no bucket")
    return bucket, key


def _error_code(error: Exception) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def _missing(error: Exception) -> bool:
    return _error_code(error) in {"404", "NoSuchKey", "NotFound"}


def _version_changed(error: Exception) -> bool:
    """An `IfMatch` request whose ETag no longer matches the object."""
    return _error_code(error) in {"PreconditionFailed", "412"}


class _S3ObjectRange(io.RawIOBase):
    """One S3 object read by byte ranges on demand. Every range is pinned to the ETag seen
    at open, so an object replaced mid-read fails loudly instead of mixing two versions."""

    def __init__(self, client: Any, bucket: str, key: str, size: int, etag: str) -> None:
        super().__init__()
        self._client, self._bucket, self._key = client, bucket, key
        self._size, self._etag, self._position = size, etag, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"s3://{self._bucket}/{self._key}: seek before the start of the object")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        end = min(self._position + len(buffer), self._size)
        if end <= self._position:
            return 0
        try:
            body = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-{end - 1}", IfMatch=self._etag
            )["Body"]
        except Exception as exc:
            if _version_changed(exc):
                raise StorageError(f"s3://{self._bucket}/{self._key} was replaced while it was being read") from None
            raise
        data = body.read()
        view = memoryview(buffer).cast("B")
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


class S3ArtifactStore(ArtifactStore):
    """S3 writes are atomic by nature: an object appears whole (PUT or completed multipart) or not at all.

    The sha256 of every object is computed while writing and kept in its metadata
    (`x-amz-meta-sha256`); reads verify against the hash the caller recorded.
    """

    def __init__(self, root: str, client: Any = None, *, multipart_threshold: int = MULTIPART_THRESHOLD) -> None:
        self.bucket, prefix = split_s3_uri(root.rstrip("/"))
        self.prefix = prefix.strip("/")
        self.root = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.client = client if client is not None else default_s3_client()
        self.multipart_threshold = multipart_threshold

    def _key(self, path: str) -> tuple[str, str]:
        if path.startswith("s3://"):
            return split_s3_uri(path)
        if "://" in path:
            raise UnknownSchemeError(f"{path}: the scheme {path.split('://', 1)[0]}:// is not supported by the S3 store")
        if path.startswith("/"):
            raise StorageError(f"{path}: a local path cannot be read from the S3 artifact store {self.root}")
        key = f"{self.prefix}/{path}" if self.prefix else path
        return self.bucket, key.rstrip("/") if path.endswith("/") else key

    def uri(self, path: str) -> str:
        bucket, key = self._key(path)
        return f"s3://{bucket}/{key}"

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=self.multipart_threshold, multipart_chunksize=max(self.multipart_threshold, 5 * 1024 * 1024))

    def _verify_written(self, bucket: str, key: str, size: int) -> None:
        head = self.client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] != size:
            raise StorageError(f"s3://{bucket}/{key}: wrote {size} bytes but S3 holds {head['ContentLength']}")

    def write_bytes(self, path: str, data: bytes) -> ArtifactRef:
        bucket, key = self._key(path)
        digest = sha256_bytes(data)
        self.client.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"sha256": digest})
        self._verify_written(bucket, key, len(data))
        return ArtifactRef(uri=f"s3://{bucket}/{key}", sha256=digest, size=len(data))

    def write_file(self, path: str, local_path: str | os.PathLike[str], *, move: bool = False) -> ArtifactRef:
        bucket, key = self._key(path)
        digest = sha256_file(local_path)
        size = os.path.getsize(local_path)
        self.client.upload_file(
            str(local_path), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}}, Config=self._transfer_config()
        )
        self._verify_written(bucket, key, size)
        return ArtifactRef(uri=f"s3://{bucket}/{key}", sha256=digest, size=size)

    def _get(self, bucket: str, key: str) -> Any:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise ArtifactNotFoundError(f"s3://{bucket}/{key}: no such object") from None
        except Exception as exc:
            if _missing(exc):
                raise ArtifactNotFoundError(f"s3://{bucket}/{key}: no such object") from None
            raise

    def read_bytes(self, path: str, expected_sha256: str | None = None) -> bytes:
        bucket, key = self._key(path)
        data = self._get(bucket, key)["Body"].read()
        check_integrity(f"s3://{bucket}/{key}", expected_sha256, sha256_bytes(data))
        return data

    def download(
        self, path: str, local_path: str | os.PathLike[str], expected_sha256: str | None = None
    ) -> ArtifactRef:
        bucket, key = self._key(path)
        if not self.exists(path):
            raise ArtifactNotFoundError(f"s3://{bucket}/{key}: no such object")
        self.client.download_file(bucket, key, str(local_path), Config=self._transfer_config())
        digest = sha256_file(local_path)
        try:
            check_integrity(f"s3://{bucket}/{key}", expected_sha256, digest)
        except Exception:
            Path(local_path).unlink(missing_ok=True)
            raise
        return ArtifactRef(uri=f"s3://{bucket}/{key}", sha256=digest, size=os.path.getsize(local_path))

    @contextmanager
    def local_path(self, path: str, expected_sha256: str | None = None) -> Iterator[str]:
        suffix = "".join(Path(self._key(path)[1]).suffixes[-2:])
        fd, temp = tempfile.mkstemp(prefix="airflow-mlops-", suffix=suffix)
        os.close(fd)
        try:
            self.download(path, temp, expected_sha256)
            yield temp
        finally:
            Path(temp).unlink(missing_ok=True)

    def _head(self, path: str, expected_version: str | None = None) -> dict[str, Any]:
        bucket, key = self._key(path)
        try:
            if expected_version is None:
                return self.client.head_object(Bucket=bucket, Key=key)
            return self.client.head_object(Bucket=bucket, Key=key, IfMatch=expected_version)
        except Exception as exc:
            if _missing(exc):
                raise ArtifactNotFoundError(f"s3://{bucket}/{key}: no such object") from None
            if _version_changed(exc):
                raise StorageError(f"s3://{bucket}/{key} was rewritten after version {expected_version} was recorded") from None
            raise

    def version(self, path: str) -> str:
        return str(self._head(path)["ETag"])

    @contextmanager
    def open_read(self, path: str, expected_version: str | None = None) -> Iterator[BinaryIO]:
        bucket, key = self._key(path)
        head = self._head(path, expected_version)
        raw = _S3ObjectRange(self.client, bucket, key, int(head["ContentLength"]), head["ETag"])
        with io.BufferedReader(raw, buffer_size=READ_BUFFER) as handle:
            yield handle

    def exists(self, path: str) -> bool:
        bucket, key = self._key(path)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _missing(exc):
                return False
            raise
        return True

    def is_dir(self, path: str) -> bool:
        bucket, key = self._key(path)
        answer = self.client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
        return answer.get("KeyCount", 0) > 0

    def _keys(self, prefix: str) -> tuple[str, list[str]]:
        bucket, key = self._key(prefix)
        folder = key.rstrip("/") + "/" if key else ""
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        if key and self.exists(prefix):
            keys.append(key)
        return bucket, sorted(set(keys))

    def list(self, prefix: str) -> list[str]:
        bucket, keys = self._keys(prefix)
        return [f"s3://{bucket}/{key}" for key in keys]

    def delete(self, path: str) -> None:
        bucket, key = self._key(path)
        self.client.delete_object(Bucket=bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        bucket, keys = self._keys(prefix)
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            self.client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        return len(keys)

    def size(self, path: str) -> int:
        return int(self._head(path)["ContentLength"])

    def sha256(self, path: str) -> str:
        bucket, key = self._key(path)
        digest = hashlib.sha256()
        body = self._get(bucket, key)["Body"]
        for block in iter(lambda: body.read(CHUNK), b""):
            digest.update(block)
        return digest.hexdigest()
