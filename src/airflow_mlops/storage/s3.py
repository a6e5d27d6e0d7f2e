"""The artifact store on S3 (or any S3 API: MinIO, moto) through boto3."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
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


def _error_code(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _missing(error: BaseException) -> bool:
    return _error_code(error) in {"404", "NoSuchKey", "NotFound"}


def _version_changed(error: BaseException) -> bool:
    """An `IfMatch` request whose ETag no longer matches the object."""
    return _error_code(error) in {"PreconditionFailed", "412"}


class _BodyMismatch(Exception):
    """A response body of another length than the range asked for (cut short by the network)."""


@cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a body that breaks part-way surfaces as: botocore wraps most cases
    (ResponseStreamingError, IncompleteReadError, ReadTimeoutError), urllib3 and
    http.client errors leak through some code paths, a reset socket is an OSError."""
    import http.client

    from botocore.exceptions import BotoCoreError
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (BotoCoreError, Urllib3Error, http.client.HTTPException, ConnectionError, TimeoutError, _BodyMismatch)


@cache
def _s3_errors() -> tuple[type[BaseException], ...]:
    """Every error boto3, botocore or the HTTP stack under them raise; callers get `StorageError` instead."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import ClientError

    return (*_transport_errors(), ClientError, Boto3Error)


def _cause(error: BaseException) -> str:
    text = str(error) or "(no message)"
    return f"{type(error).__name__}: {text[:300]}"


def _storage_error(uri: str, action: str, error: BaseException) -> StorageError:
    if _missing(error):
        return ArtifactNotFoundError(f"{uri}: no such object")
    return StorageError(f"{uri}: {action} failed: {_cause(error)}")


@contextmanager
def _translated(uri: str, action: str) -> Iterator[None]:
    try:
        yield
    except _s3_errors() as exc:
        raise _storage_error(uri, action, exc) from exc


@dataclass(frozen=True)
class ReadRetry:
    """How a read whose body breaks part-way is re-requested. botocore retries whole
    requests (5xx, throttling, refused connections) but not a body cut short after
    the headers arrived; this covers that."""

    attempts: int = 4
    first_delay: float = 0.2
    max_delay: float = 3.0

    def delay(self, failures: int) -> float:
        """Exponential backoff with equal jitter, so workers hit by the same outage spread their retries."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** (failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _stream(
    client: Any,
    retry: ReadRetry,
    bucket: str,
    key: str,
    sink: Callable[[bytes], object],
    *,
    start: int = 0,
    end: int | None = None,
    etag: str | None = None,
) -> dict[str, Any]:
    """Feed bytes `start`..`end` (exclusive; default: the whole object) of one object to `sink`, in order,
    each byte once. A body that breaks is re-requested from where it broke, pinned with `IfMatch` to the
    ETag of the first response, so a rewritten object fails instead of mixing two versions.
    Returns the first response (ETag, Metadata, ContentLength)."""
    uri = f"s3://{bucket}/{key}"
    position, failures, first = start, 0, None
    while True:
        request = {"Bucket": bucket, "Key": key}
        if etag is not None:
            request["IfMatch"] = etag
        if end is not None or position > 0:
            request["Range"] = f"bytes={position}-{'' if end is None else end - 1}"
        try:
            response = client.get_object(**request)
        except _s3_errors() as exc:
            if _version_changed(exc):
                raise StorageError(f"{uri} was replaced while it was being read (ETag {etag} no longer matches)") from exc
            raise _storage_error(uri, f"GET {request.get('Range', 'bytes=0-')}", exc) from exc
        if first is None:
            first, etag = response, response["ETag"]
            end = position + int(response["ContentLength"]) if end is None else end
        body = response["Body"]
        try:
            if int(response["ContentLength"]) != end - position:
                raise _BodyMismatch(f"asked for {end - position} bytes, S3 announced {response['ContentLength']}")
            for block in iter(partial(body.read, CHUNK), b""):
                if position + len(block) > end:
                    raise _BodyMismatch(f"the body ran past byte {end}")
                sink(block)
                position += len(block)
            if position != end:
                raise _BodyMismatch(f"the body ended at byte {position} of {end}")
            return first
        except _transport_errors() as exc:
            failures += 1
            if failures >= retry.attempts:
                raise StorageError(
                    f"{uri}: reading bytes {start}-{end - 1} broke {failures} times; last cause: {_cause(exc)}"
                ) from exc
            time.sleep(retry.delay(failures))
        finally:
            body.close()


class _S3ObjectRange(io.RawIOBase):
    """One S3 object read by byte ranges on demand. Every range is pinned to the ETag seen
    at open, so an object replaced mid-read fails loudly instead of mixing two versions."""

    def __init__(self, client: Any, retry: ReadRetry, bucket: str, key: str, size: int, etag: str) -> None:
        super().__init__()
        self._client, self._retry, self._bucket, self._key = client, retry, bucket, key
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
        view = memoryview(buffer).cast("B")
        filled = 0

        def fill(block: bytes) -> None:
            nonlocal filled
            view[filled : filled + len(block)] = block
            filled += len(block)

        _stream(self._client, self._retry, self._bucket, self._key, fill, start=self._position, end=end, etag=self._etag)
        self._position += filled
        return filled

    def readall(self) -> bytes:
        """The rest of the object in one ranged request (the inherited one asks for 8 KiB at a time)."""
        if self._position >= self._size:
            return b""
        data = bytearray()
        _stream(self._client, self._retry, self._bucket, self._key, data.extend,
                start=self._position, end=self._size, etag=self._etag)
        self._position = self._size
        return bytes(data)


class S3ArtifactStore(ArtifactStore):
    """S3 writes are atomic by nature: an object appears whole (PUT or completed multipart) or not at all.

    The sha256 of every object is computed while writing and kept in its metadata
    (`x-amz-meta-sha256`); reads verify against the hash the caller recorded, else
    against that metadata. Every error of boto3, botocore or the HTTP stack reaches
    callers as `StorageError` (`ArtifactNotFoundError` for a missing object).
    """

    def __init__(
        self,
        root: str,
        client: Any = None,
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        read_retry: ReadRetry | None = None,
    ) -> None:
        self.bucket, prefix = split_s3_uri(root.rstrip("/"))
        self.prefix = prefix.strip("/")
        self.root = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.client = client if client is not None else default_s3_client()
        self.multipart_threshold = multipart_threshold
        self.read_retry = read_retry or ReadRetry()

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

    def _holds(self, bucket: str, key: str, sha256: str, size: int) -> bool:
        """Whether S3 now holds exactly these bytes (as written by this store: size and sha256 metadata)."""
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except _s3_errors() as exc:
            if _missing(exc):
                return False
            raise
        return int(head["ContentLength"]) == size and head.get("Metadata", {}).get("sha256") == sha256

    def _put(self, bucket: str, key: str, sha256: str, size: int, upload: Callable[[], object]) -> None:
        """Run `upload` and prove the object is whole. A request whose answer was lost is retried
        by botocore with the same bytes and metadata, so a retry cannot make another object; a
        failed multipart upload is aborted by s3transfer. When the upload still raises, the object
        may have landed whole before the answer was lost: then the write is done."""
        uri = f"s3://{bucket}/{key}"
        try:
            upload()
        except _s3_errors() as exc:
            try:
                landed = self._holds(bucket, key, sha256, size)
            except _s3_errors():
                landed = False
            if landed:
                return
            raise _storage_error(uri, "upload", exc) from exc
        with _translated(uri, "HEAD after upload"):
            if not self._holds(bucket, key, sha256, size):
                raise StorageError(f"{uri}: wrote {size} bytes with sha256 {sha256} but S3 holds another object")

    def write_bytes(self, path: str, data: bytes) -> ArtifactRef:
        bucket, key = self._key(path)
        digest = sha256_bytes(data)
        self._put(
            bucket, key, digest, len(data),
            lambda: self.client.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"sha256": digest}),
        )
        return ArtifactRef(uri=f"s3://{bucket}/{key}", sha256=digest, size=len(data))

    def write_file(self, path: str, local_path: str | os.PathLike[str], *, move: bool = False) -> ArtifactRef:
        bucket, key = self._key(path)
        digest = sha256_file(local_path)
        size = os.path.getsize(local_path)
        self._put(
            bucket, key, digest, size,
            lambda: self.client.upload_file(
                str(local_path), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}}, Config=self._transfer_config()
            ),
        )
        return ArtifactRef(uri=f"s3://{bucket}/{key}", sha256=digest, size=size)

    def _read_whole(self, bucket: str, key: str, sink: Callable[[bytes], object]) -> tuple[str, str | None]:
        """Stream the whole object to `sink`; returns its sha256 and the sha256 its metadata records (if any)."""
        digest = hashlib.sha256()

        def feed(block: bytes) -> None:
            digest.update(block)
            sink(block)

        first = _stream(self.client, self.read_retry, bucket, key, feed)
        return digest.hexdigest(), first.get("Metadata", {}).get("sha256")

    def read_bytes(self, path: str, expected_sha256: str | None = None) -> bytes:
        bucket, key = self._key(path)
        data = bytearray()
        actual, recorded = self._read_whole(bucket, key, data.extend)
        check_integrity(f"s3://{bucket}/{key}", expected_sha256 or recorded, actual)
        return bytes(data)

    def download(
        self, path: str, local_path: str | os.PathLike[str], expected_sha256: str | None = None
    ) -> ArtifactRef:
        bucket, key = self._key(path)
        try:
            with open(local_path, "wb") as handle:
                actual, recorded = self._read_whole(bucket, key, handle.write)
            check_integrity(f"s3://{bucket}/{key}", expected_sha256 or recorded, actual)
        except BaseException:
            Path(local_path).unlink(missing_ok=True)
            raise
        return ArtifactRef(uri=f"s3://{bucket}/{key}", sha256=actual, size=os.path.getsize(local_path))

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
        uri = f"s3://{bucket}/{key}"
        try:
            if expected_version is None:
                return self.client.head_object(Bucket=bucket, Key=key)
            return self.client.head_object(Bucket=bucket, Key=key, IfMatch=expected_version)
        except _s3_errors() as exc:
            if _version_changed(exc):
                raise StorageError(f"{uri} was rewritten after version {expected_version} was recorded") from None
            raise _storage_error(uri, "HEAD", exc) from exc

    def version(self, path: str) -> str:
        return str(self._head(path)["ETag"])

    @contextmanager
    def open_read(self, path: str, expected_version: str | None = None, *, mapped: bool = True) -> Iterator[BinaryIO]:
        del mapped  # S3 objects are read by ranges; nothing is mapped
        bucket, key = self._key(path)
        head = self._head(path, expected_version)
        raw = _S3ObjectRange(self.client, self.read_retry, bucket, key, int(head["ContentLength"]), head["ETag"])
        with io.BufferedReader(raw, buffer_size=READ_BUFFER) as handle:
            yield handle

    def exists(self, path: str) -> bool:
        try:
            self._head(path)
        except ArtifactNotFoundError:
            return False
        return True

    def is_dir(self, path: str) -> bool:
        bucket, key = self._key(path)
        folder = key.rstrip("/") + "/"
        with _translated(f"s3://{bucket}/{folder}", "LIST"):
            answer = self.client.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=1)
        return answer.get("KeyCount", 0) > 0

    def _keys(self, prefix: str) -> tuple[str, list[str]]:
        bucket, key = self._key(prefix)
        folder = key.rstrip("/") + "/" if key else ""
        keys: list[str] = []
        with _translated(f"s3://{bucket}/{folder}", "LIST"):
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
        with _translated(f"s3://{bucket}/{key}", "DELETE"):
            self.client.delete_object(Bucket=bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        bucket, keys = self._keys(prefix)
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            with _translated(f"s3://{bucket}/{batch[0]}", "DELETE (batch)"):
                answer = self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            # A batch delete answers 200 even when some keys failed; they are listed in Errors.
            failed = [f"{e.get('Key')} ({e.get('Code')})" for e in answer.get("Errors", [])]
            if failed:
                raise StorageError(f"s3://{bucket}: {len(failed)} objects were not deleted: {', '.join(failed[:10])}")
        return len(keys)

    def size(self, path: str) -> int:
        return int(self._head(path)["ContentLength"])

    def sha256(self, path: str) -> str:
        bucket, key = self._key(path)
        return self._read_whole(bucket, key, lambda block: None)[0]
