"""The artifact store on a local (or mounted) filesystem."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from airflow_mlops.errors import ArtifactNotFoundError, StorageError, UnknownSchemeError
from airflow_mlops.refs import ArtifactRef
from airflow_mlops.storage.base import (
    STALE_TEMP_SECONDS,
    TEMP_MARKER,
    ArtifactStore,
    check_integrity,
    remove_older_than,
    sha256_bytes,
    sha256_file,
)
from airflow_mlops.storage.keys import ensure_within

_NAME_IN_TEMP = 100  # characters of the object's name kept in its temporaries' names (file names stop at 255)


class LocalArtifactStore(ArtifactStore):
    """Atomic writes by a temporary file in the same folder, fsync, then `os.replace`.

    A temporary is named `.tmp-<object name>-<random>`: `list` never shows it, and a killed
    write's leftover is removed by the next write of the same object once it is an hour old, by a
    retry that stages the same object, or by `remove_stale_temporaries` (a batch commit).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root = str(root)
        if root.startswith("file://"):
            root = root[len("file://") :]
        self.root = str(Path(root).expanduser().resolve())

    def _path(self, path: str) -> Path:
        if path.startswith("file://"):
            return Path(path[len("file://") :])
        if "://" in path:
            scheme = path.split("://", 1)[0]
            raise UnknownSchemeError(
                f"{path}: the scheme {scheme}:// is not supported by the local store (use a path or file://)"
            )
        candidate = Path(path)
        return candidate if candidate.is_absolute() else Path(self.root) / candidate

    def uri(self, path: str) -> str:
        return str(self._path(path))

    def _existing(self, path: str) -> Path:
        target = self._path(path)
        if not target.is_file():
            raise ArtifactNotFoundError(f"{target}: no such file")
        return target

    def _temporary(self, target: Path, suffix: str = "", stale_after: float = STALE_TEMP_SECONDS) -> tuple[int, str]:
        """An open temporary beside `target`, after removing `target`'s own leftovers older than `stale_after`."""
        target.parent.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temporaries(str(target.parent), target.name, older_than=stale_after)
        return tempfile.mkstemp(prefix=_temp_prefix(target.name), suffix=suffix, dir=target.parent)

    def write_bytes(self, path: str, data: bytes) -> ArtifactRef:
        target = self._path(path)
        fd, temp = self._temporary(target)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return ArtifactRef(uri=str(target), sha256=sha256_bytes(data), size=len(data))

    def write_file(self, path: str, local_path: str | os.PathLike[str], *, move: bool = False) -> ArtifactRef:
        target = self._path(path)
        fd, temp = self._temporary(target)
        os.close(fd)
        try:
            if move and os.stat(local_path).st_dev == os.stat(temp).st_dev:
                os.replace(local_path, temp)  # same filesystem: a rename, not a copy of the bytes
            else:
                shutil.copyfile(local_path, temp)
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
            digest = sha256_file(temp)
            size = os.path.getsize(temp)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return ArtifactRef(uri=str(target), sha256=digest, size=size)

    @contextmanager
    def staging_file(self, path: str, suffix: str = "", *, stale_after: float = STALE_TEMP_SECONDS) -> Iterator[str]:
        """A temporary beside the final key: `write_file(path, it, move=True)` is then one rename."""
        fd, temp = self._temporary(self._path(path), suffix, stale_after)
        os.close(fd)
        try:
            yield temp
        finally:
            Path(temp).unlink(missing_ok=True)

    def remove_stale_temporaries(self, prefix: str, name: str | None = None, *, older_than: float = 0.0) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        pattern = glob.escape(_temp_prefix(name) if name is not None else TEMP_MARKER) + "*"
        candidates = list(folder.glob(pattern))
        for candidate in candidates:
            ensure_within(str(folder), str(candidate), "remove the temporary")
        return [str(path) for path in remove_older_than(candidates, older_than)]

    def read_bytes(self, path: str, expected_sha256: str | None = None) -> bytes:
        target = self._existing(path)
        data = target.read_bytes()
        check_integrity(str(target), expected_sha256, sha256_bytes(data))
        return data

    def download(
        self, path: str, local_path: str | os.PathLike[str], expected_sha256: str | None = None
    ) -> ArtifactRef:
        source = self._existing(path)
        shutil.copyfile(source, local_path)
        digest = sha256_file(local_path)
        try:
            check_integrity(str(source), expected_sha256, digest)
        except Exception:
            Path(local_path).unlink(missing_ok=True)
            raise
        return ArtifactRef(uri=str(source), sha256=digest, size=os.path.getsize(local_path))

    @contextmanager
    def local_path(self, path: str, expected_sha256: str | None = None) -> Iterator[str]:
        target = self._existing(path)
        if expected_sha256 is not None:
            check_integrity(str(target), expected_sha256, sha256_file(target))
        yield str(target)

    @contextmanager
    def open_read(self, path: str, expected_version: str | None = None, *, mapped: bool = True) -> Iterator[BinaryIO]:
        """The file memory-mapped: Arrow decodes pages in place instead of first copying them into
        fresh buffers (measured: 5-7% of batch-inference wall time).

        Our writes replace files by rename, so the map keeps reading the version checked here. A file
        truncated in place while mapped kills the reader with SIGBUS; its retry then fails the version check.
        """
        import pyarrow as pa

        target = self._existing(path)
        with (pa.memory_map(str(target), "r") if mapped else pa.OSFile(str(target), "r")) as source:
            if expected_version is not None and _version(os.fstat(source.fileno())) != expected_version:
                raise StorageError(f"{target} was rewritten after version {expected_version} was recorded")
            yield source

    def version(self, path: str) -> str:
        return _version(self._existing(path).stat())

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def is_dir(self, path: str) -> bool:
        return self._path(path).is_dir()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if base.is_file():
            return [str(base)]
        if not base.is_dir():
            return []
        return sorted(
            str(p) for p in base.rglob("*") if p.is_file() and not p.name.startswith(TEMP_MARKER)
        )

    def delete(self, path: str) -> None:
        self._path(path).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix)
        if base.is_file():
            base.unlink()
            return 1
        if not base.is_dir():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        try:
            shutil.rmtree(base)
        except OSError as exc:
            raise StorageError(f"{base}: could not delete: {exc}") from exc
        return count

    def size(self, path: str) -> int:
        return self._existing(path).stat().st_size


def _version(stat: os.stat_result) -> str:
    return f"{stat.st_ino}-{stat.st_size}-{stat.st_mtime_ns}"


def _temp_prefix(name: str) -> str:
    return f"{TEMP_MARKER}{name[:_NAME_IN_TEMP]}-"
