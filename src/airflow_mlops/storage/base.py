"""The artifact store interface: one API over a local folder and S3."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from airflow_mlops.errors import IntegrityError, UnknownSchemeError
from airflow_mlops.refs import ArtifactRef
from airflow_mlops.settings import HOME_ENV

CHUNK = 1024 * 1024
TEMP_MARKER = ".tmp-"
# A temporary this old belongs to a write that died: no write of one object takes an hour.
STALE_TEMP_SECONDS = 3600.0


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_root() -> str:
    """`AIRFLOW_MLOPS_HOME`, else `$AIRFLOW_HOME/mlops`, else `~/.airflow_mlops` (absolute, or s3://)."""
    root = os.environ.get(HOME_ENV)
    if not root:
        airflow_home = os.environ.get("AIRFLOW_HOME")
        root = str(Path(airflow_home) / "mlops") if airflow_home else str(Path.home() / ".airflow_mlops")
    if root.startswith("s3://"):
        return root.rstrip("/")
    if root.startswith("file://"):
        root = root[len("file://") :]
    if "://" in root:
        raise UnknownSchemeError(f"AIRFLOW_MLOPS_HOME={root!r}: expected a path, file:// or s3://bucket/prefix")
    return str(Path(root).expanduser().resolve())


def check_integrity(uri: str, expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise IntegrityError(
            f"{uri}: content does not match its recorded sha256 (expected {expected}, found {actual}); "
            "it was changed or corrupted after it was written"
        )


class ArtifactStore(ABC):
    """Objects addressed by URI; relative paths resolve against `root`.

    Writes are atomic: a reader sees the old object or the whole new one, never
    a part. Every write returns an `ArtifactRef` with the sha256 of the bytes.
    """

    root: str

    @abstractmethod
    def uri(self, path: str) -> str:
        """The absolute URI of `path` (relative paths join the root)."""

    @abstractmethod
    def write_bytes(self, path: str, data: bytes) -> ArtifactRef: ...

    @abstractmethod
    def write_file(self, path: str, local_path: str | os.PathLike[str], *, move: bool = False) -> ArtifactRef:
        """Store a local file atomically; with `move` the local file may be consumed (renamed) instead of copied."""

    @abstractmethod
    def read_bytes(self, path: str, expected_sha256: str | None = None) -> bytes: ...

    @abstractmethod
    def download(
        self, path: str, local_path: str | os.PathLike[str], expected_sha256: str | None = None
    ) -> ArtifactRef: ...

    @abstractmethod
    @contextmanager
    def local_path(self, path: str, expected_sha256: str | None = None) -> Iterator[str]:
        """A local file with the object's bytes, verified when a hash is given."""

    @abstractmethod
    @contextmanager
    def open_read(self, path: str, expected_version: str | None = None, *, mapped: bool = True) -> Iterator[BinaryIO]:
        """A seekable binary file over the object that fetches only what is read, so a
        reader of a parquet footer or of a few row groups never transfers the whole file.

        With `expected_version` (from `version`), an object rewritten since then raises
        `StorageError` instead of being read. `mapped=False` is for a reader that streams a
        whole file once: a local store then reads instead of memory-mapping it, since every
        mapped page read stays in the process's resident memory until the file is closed.
        """

    @abstractmethod
    def version(self, path: str) -> str:
        """A token that changes whenever the object is rewritten (S3: the ETag; locally:
        inode, size and modification time); reading it costs one metadata request."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def is_dir(self, path: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """URIs of every object under `prefix`, recursively, sorted; in-progress writes excluded."""

    @abstractmethod
    def delete(self, path: str) -> None: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int: ...

    @abstractmethod
    def size(self, path: str) -> int: ...

    @contextmanager
    def staging_file(self, path: str, suffix: str = "", *, stale_after: float = STALE_TEMP_SECONDS) -> Iterator[str]:
        """A local file to build the object for `path` in, before `write_file(path, it, move=True)`;
        removed on exit.

        Leftovers of earlier, killed attempts at the same `path` older than `stale_after` seconds are
        removed first; pass 0 where the caller is that path's only writer (a task and its retries).
        This default stages in the system temp folder under a name derived from the object's URI (an
        S3 upload needs a local file); the local store stages beside the final key instead.
        """
        folder = Path(tempfile.gettempdir())
        stem = f"airflow-mlops-staging-{sha256_bytes(self.uri(path).encode())[:16]}-"
        remove_older_than(folder.glob(stem + "*"), stale_after)
        fd, temp = tempfile.mkstemp(prefix=stem, suffix=suffix, dir=folder)
        os.close(fd)
        try:
            yield temp
        finally:
            Path(temp).unlink(missing_ok=True)

    def remove_stale_temporaries(self, prefix: str, name: str | None = None, *, older_than: float = 0.0) -> list[str]:
        """Remove what interrupted writes left directly in the folder `prefix` (not in sub-folders):
        only those for the object called `name` when given, only those older than `older_than` seconds.
        Returns their URIs.

        Call it where no other write into that folder (or of that object) can be in progress: a
        batch commit runs after every chunk finished. S3 writes appear whole or not at all and leave
        no temporary keys, so this default removes nothing.
        """
        return []

    def sha256(self, path: str) -> str:
        with self.local_path(path) as local:
            return sha256_file(local)

    def write_json(self, path: str, obj: Any) -> ArtifactRef:
        data = json.dumps(obj, sort_keys=True, indent=1, default=str).encode("utf-8")
        return self.write_bytes(path, data)

    def read_json(self, path: str, expected_sha256: str | None = None) -> Any:
        return json.loads(self.read_bytes(path, expected_sha256).decode("utf-8"))


def remove_older_than(paths: Iterable[Path], seconds: float) -> list[Path]:
    """Unlink the plain files among `paths` last modified more than `seconds` ago; the ones removed."""
    now = time.time()
    removed = []
    for path in paths:
        try:
            if path.is_symlink() or not path.is_file() or now - path.stat().st_mtime < seconds:
                continue
            path.unlink()
        except FileNotFoundError:
            continue  # removed meanwhile by another cleanup
        removed.append(path)
    return removed
