"""The S3 store under network faults, injected by a proxy between boto3 and moto.

Every read returns the exact bytes or raises `StorageError` naming the key; every write ends
whole or failed; a batch run under faults commits a correct manifest or commits nothing.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import BotoCoreError, ClientError
from fault_proxy import Fault, FaultProxy

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.errors import ArtifactNotFoundError, StorageError
from airflow_mlops.inference import commit_batch, plan_batch, read_output, score_chunk
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage.s3 import ReadRetry, S3ArtifactStore
from airflow_mlops.testing.s3 import dummy_session, s3_client_for
from airflow_mlops.training import train_model

pytestmark = pytest.mark.s3

FAST_RETRY = ReadRetry(attempts=4, first_delay=0.01, max_delay=0.05)
BOTOCORE_ATTEMPTS = 4  # direct_for's request-level tries: the first and max_attempts=3 retries
READ_TIMEOUT = 1.0
KEY = r"/root/data\.bin"
# Larger than one open_read buffer (1 MiB), so the seekable reader needs several ranges.
DATA = bytes(range(256)) * 6000
OLD, NEW = b"old content " * 1000, b"new content " * 1200


# The proxy and a boto3 session live for the module (a fresh session costs about a second on a busy
# machine); clients are per test, since botocore's retry quota drains as faults accumulate.
@pytest.fixture(scope="module")
def proxy(s3_server: str) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server) as running:
        yield running


@pytest.fixture(autouse=True)
def no_leftover_faults(proxy: FaultProxy) -> Iterator[None]:
    proxy.clear()
    yield
    proxy.clear()


@pytest.fixture(scope="module")
def session() -> Any:
    return dummy_session()


@pytest.fixture
def direct(s3_server: str, session: Any) -> Any:
    """A client around the proxy, for setting up and inspecting what S3 really holds."""
    return s3_client_for(s3_server, session=session)


@pytest.fixture
def proxied_client(proxy: FaultProxy, session: Any) -> Any:
    return s3_client_for(proxy.url, session=session, max_attempts=BOTOCORE_ATTEMPTS - 1,
                         connect_timeout=READ_TIMEOUT, read_timeout=READ_TIMEOUT)


@pytest.fixture
def bucket(direct: Any) -> str:
    name = f"faults-{uuid.uuid4().hex[:12]}"
    direct.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(proxied_client: Any, bucket: str) -> S3ArtifactStore:
    return S3ArtifactStore(f"s3://{bucket}/root", client=proxied_client, read_retry=FAST_RETRY)


def put_direct(direct: Any, bucket: str, key: str, data: bytes) -> str:
    """Write around the proxy, as another writer would; returns the ETag."""
    metadata = {"sha256": hashlib.sha256(data).hexdigest()}
    return direct.put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata)["ETag"]


def get_direct(direct: Any, bucket: str, key: str) -> bytes | None:
    try:
        return direct.get_object(Bucket=bucket, Key=key)["Body"].read()
    except direct.exceptions.NoSuchKey:
        return None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Each read path returns the sha256 of the bytes it handed out.
def via_read_bytes(store: S3ArtifactStore, path: str, tmp: Path) -> str:
    return digest(store.read_bytes(path))


def via_download(store: S3ArtifactStore, path: str, tmp: Path) -> str:
    store.download(path, tmp / "copy.bin")
    return digest((tmp / "copy.bin").read_bytes())


def via_local_path(store: S3ArtifactStore, path: str, tmp: Path) -> str:
    with store.local_path(path) as local:
        return digest(Path(local).read_bytes())


def via_open_read(store: S3ArtifactStore, path: str, tmp: Path) -> str:
    """Like a parquet reader: the footer first, then the body in pieces (1 MiB ranges under the buffer)."""
    with store.open_read(path) as handle:
        handle.seek(-8, io.SEEK_END)
        tail = handle.read()
        handle.seek(0)
        whole = b"".join(iter(lambda: handle.read(300_000), b""))
    assert tail == whole[-8:]
    return digest(whole)


def via_sha256(store: S3ArtifactStore, path: str, tmp: Path) -> str:
    return store.sha256(path)


READ_PATHS: dict[str, Callable[[S3ArtifactStore, str, Path], str]] = {
    "read_bytes": via_read_bytes, "download": via_download, "local_path": via_local_path,
    "open_read": via_open_read, "sha256": via_sha256,
}

# Faults that end: the read must come back whole and exact. (botocore backs off SlowDown for
# up to seconds, other errors for milliseconds, so the persistent cases below mostly use 500.)
TRANSIENT_READ_FAULTS: dict[str, Callable[[], Fault]] = {
    "truncated body": lambda: Fault("truncate", path=KEY, times=2),
    "truncated at the first byte": lambda: Fault("truncate", path=KEY, keep=0, times=1),
    "dropped before the request": lambda: Fault("drop_before", path=KEY, times=2),
    "dropped after the request": lambda: Fault("drop_after", path=KEY, times=2),
    "500 InternalError": lambda: Fault("status", path=KEY, status=500, code="InternalError", times=1),
}
# Slow ones (botocore backs SlowDown off for up to a second; a stall costs the read timeout), tried on
# the two code paths: whole-object reads (read_bytes, download, local_path, sha256 share one) and ranges.
SLOW_READ_FAULTS: dict[str, Callable[[], Fault]] = {
    "503 SlowDown": lambda: Fault("status", path=KEY, status=503, code="SlowDown", times=1),
    "body stalls past the read timeout": lambda: Fault("delay", path=KEY, seconds=READ_TIMEOUT + 0.5, times=1),
}
READ_CASES = [
    *(pytest.param(fault, read, id=f"{name}-{path}")
      for name, fault in TRANSIENT_READ_FAULTS.items() for path, read in READ_PATHS.items()),
    *(pytest.param(fault, READ_PATHS[path], id=f"{name}-{path}")
      for name, fault in SLOW_READ_FAULTS.items() for path in ("read_bytes", "open_read")),
]


@pytest.mark.parametrize(("fault", "read"), READ_CASES)
def test_every_read_path_returns_the_exact_bytes_through_a_fault_that_ends(
    store, proxy, direct, bucket, tmp_path, read, fault
):
    put_direct(direct, bucket, "root/data.bin", DATA)
    injected = proxy.inject(fault())
    assert read(store, "data.bin", tmp_path) == digest(DATA)
    assert injected.applied == injected.times


def test_a_retried_read_is_pinned_to_the_etag_and_asks_only_for_bytes_not_yet_received(store, proxy, direct, bucket):
    etag = put_direct(direct, bucket, "root/data.bin", DATA)
    proxy.inject(Fault("truncate", path=KEY, keep=1000, times=1))
    assert store.read_bytes("data.bin") == DATA
    # On a loaded machine a retry can itself time out and be asked again: every retry is pinned.
    first, *retries = proxy.requests("GET", KEY)
    assert first.fault == "truncate" and retries and all(r.fault is None for r in retries)
    assert all(r.headers["If-Match"] == etag for r in retries)
    # Bytes received before the break are kept only when handed out whole, so the range may start earlier.
    start, end = (int(n) for n in retries[0].headers["Range"].removeprefix("bytes=").split("-"))
    assert start <= 1000 and end == len(DATA) - 1


@pytest.mark.parametrize("read", READ_PATHS.values(), ids=READ_PATHS.keys())
def test_a_body_that_always_breaks_raises_storage_error_after_bounded_retries(
    store, proxy, direct, bucket, tmp_path, read
):
    put_direct(direct, bucket, "root/data.bin", DATA)
    proxy.inject(Fault("truncate", path=KEY, times=None))
    with pytest.raises(StorageError, match=r"s3://.*/root/data\.bin: reading bytes .* broke 4 times") as raised:
        read(store, "data.bin", tmp_path)
    assert not isinstance(raised.value, BotoCoreError | ClientError)
    assert len(proxy.requests("GET", KEY)) == FAST_RETRY.attempts
    assert not (tmp_path / "copy.bin").exists()  # download removed its partial copy


PERSISTENT_REQUEST_FAULTS: dict[str, tuple[Callable[..., Fault], str]] = {
    "dropped before the request": (lambda **kw: Fault("drop_before", times=None, **kw), "ConnectionClosedError"),
    "dropped after the request": (lambda **kw: Fault("drop_after", times=None, **kw), "ConnectionClosedError"),
    "503 SlowDown": (lambda **kw: Fault("status", status=503, code="SlowDown", times=None, **kw), "SlowDown"),
    "500 InternalError": (lambda **kw: Fault("status", status=500, code="InternalError", times=None, **kw), "InternalError"),
}


@pytest.mark.parametrize(("fault", "cause"), PERSISTENT_REQUEST_FAULTS.values(), ids=PERSISTENT_REQUEST_FAULTS.keys())
def test_a_request_that_always_fails_raises_storage_error_after_botocores_retries(
    store, proxy, direct, bucket, tmp_path, fault, cause
):
    put_direct(direct, bucket, "root/data.bin", DATA)
    proxy.inject(fault(method="GET", path=KEY))
    with pytest.raises(StorageError, match=rf"root/data\.bin: GET .*{cause}"):
        store.read_bytes("data.bin")
    # botocore's attempts only: the body-level retry does not multiply request-level ones.
    assert len(proxy.requests("GET", KEY)) == BOTOCORE_ATTEMPTS


def open_and_close(store: S3ArtifactStore, path: str) -> None:
    with store.open_read(path):
        pass


METADATA_CALLS: dict[str, Callable[[S3ArtifactStore], object]] = {
    "exists": lambda s: s.exists("data.bin"),
    "size": lambda s: s.size("data.bin"),
    "version": lambda s: s.version("data.bin"),
    "open_read": lambda s: open_and_close(s, "data.bin"),
    "list": lambda s: len(s.list("")),
    "is_dir": lambda s: s.is_dir("sub"),
    "delete": lambda s: s.delete("data.bin"),
}


@pytest.mark.parametrize("name", METADATA_CALLS)
def test_metadata_calls_ride_out_a_fault_and_raise_storage_error_on_a_persistent_one(
    store, proxy, direct, bucket, name
):
    etag = put_direct(direct, bucket, "root/data.bin", DATA)
    put_direct(direct, bucket, "root/sub/a.bin", b"a")
    expected = {"exists": True, "size": len(DATA), "version": etag, "open_read": None, "list": 2, "is_dir": True,
                "delete": None}[name]
    proxy.inject(Fault("drop_after", method=None, path="", times=1))
    proxy.inject(Fault("status", method=None, path="", status=500, code="InternalError", times=1))
    assert METADATA_CALLS[name](store) == expected
    put_direct(direct, bucket, "root/data.bin", DATA)
    proxy.clear()
    proxy.inject(Fault("status", method=None, path="", status=500, code="InternalError", times=None))
    with pytest.raises(StorageError, match=rf"s3://{bucket}/root.*failed: .*(InternalError|500)"):
        METADATA_CALLS[name](store)


def test_a_truncated_listing_is_retried_and_complete(store, proxy, direct, bucket):
    for index in range(30):
        put_direct(direct, bucket, f"root/parts/part-{index:02d}.bin", b"x")
    proxy.inject(Fault("truncate", path=r"list-type=2", times=2))
    assert len(store.list("parts")) == 30


def test_a_missing_object_is_still_not_found_through_the_proxy(store):
    with pytest.raises(ArtifactNotFoundError):
        store.read_bytes("missing.bin")
    with pytest.raises(ArtifactNotFoundError):
        store.size("missing.bin")
    assert not store.exists("missing.bin")


def test_an_object_rewritten_between_retries_is_refused_not_mixed(store, proxy, direct, bucket, tmp_path):
    put_direct(direct, bucket, "root/data.bin", DATA)
    rewritten = bytes(reversed(DATA))
    proxy.inject(Fault("truncate", path=KEY, then=lambda: put_direct(direct, bucket, "root/data.bin", rewritten)))
    with pytest.raises(StorageError, match=r"root/data\.bin was replaced while it was being read"):
        store.read_bytes("data.bin")
    first, retry = proxy.requests("GET", KEY)
    assert retry.headers["If-Match"] and retry.headers["If-Match"] != direct.head_object(
        Bucket=bucket, Key="root/data.bin")["ETag"]


def test_a_seekable_reader_refuses_an_object_rewritten_between_range_retries(store, proxy, direct, bucket):
    put_direct(direct, bucket, "root/data.bin", DATA)
    with store.open_read("data.bin") as handle:
        handle.seek(-8, io.SEEK_END)
        assert handle.read() == DATA[-8:]
        proxy.inject(Fault("truncate", path=KEY, then=lambda: put_direct(direct, bucket, "root/data.bin", OLD)))
        handle.seek(0)
        with pytest.raises(StorageError, match="replaced while it was being read"):
            handle.read()


# Write faults: (fault, whether the call succeeds, what S3 holds afterwards).
WRITE_FAULTS: dict[str, tuple[Callable[[], list[Fault]], bool, bytes]] = {
    "dropped before, once": (lambda: [Fault("drop_before", method="PUT", path=KEY)], True, NEW),
    "applied, answer lost once": (lambda: [Fault("drop_after", method="PUT", path=KEY)], True, NEW),
    "503 SlowDown once": (lambda: [Fault("status", method="PUT", path=KEY)], True, NEW),
    "500 InternalError once": (lambda: [Fault("status", method="PUT", path=KEY, status=500, code="InternalError")], True, NEW),
    "never reaches S3": (lambda: [Fault("drop_before", method="PUT", path=KEY, times=None)], False, OLD),
    "always 500 InternalError": (
        lambda: [Fault("status", method="PUT", path=KEY, status=500, code="InternalError", times=None)], False, OLD),
    # Applied, but no answer ever arrives: the check that follows proves the object landed whole.
    "applied, every answer lost": (lambda: [Fault("drop_after", method="PUT", path=KEY, times=None)], True, NEW),
    # Applied, and S3 cannot even be asked: the call fails, the object is whole (new), never partial.
    "applied, S3 unreachable after": (
        lambda: [Fault("drop_after", method="PUT", path=KEY, times=None),
                 Fault("drop_before", method="HEAD", path=KEY, times=None)], False, NEW),
}


@pytest.mark.parametrize(("faults", "succeeds", "held"), WRITE_FAULTS.values(), ids=WRITE_FAULTS.keys())
def test_a_write_ends_whole_or_failed(store, proxy, direct, bucket, faults, succeeds, held):
    put_direct(direct, bucket, "root/data.bin", OLD)
    injected = [proxy.inject(fault) for fault in faults()]
    if succeeds:
        ref = store.write_bytes("data.bin", NEW)
        assert ref.sha256 == digest(NEW) and ref.size == len(NEW)
    else:
        with pytest.raises(StorageError, match=r"root/data\.bin: upload failed"):
            store.write_bytes("data.bin", NEW)
    assert all(fault.applied for fault in injected)
    assert get_direct(direct, bucket, "root/data.bin") == held


@pytest.fixture
def big_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = np.random.default_rng(0).bytes(11 * 1024 * 1024)  # three parts of 5 MiB
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    return path, data


MULTIPART_FAULTS: dict[str, tuple[Callable[[], list[Fault]], bool]] = {
    "a part dropped before, once": (lambda: [Fault("drop_before", method="PUT", path="partNumber=2")], True),
    "a part applied, answer lost once": (lambda: [Fault("drop_after", method="PUT", path="partNumber=2")], True),
    "the completion applied, answer lost once": (lambda: [Fault("drop_after", method="POST", path=r"uploadId=")], True),
    "a part always 500": (
        lambda: [Fault("status", method="PUT", path="partNumber=2", status=500, code="InternalError", times=None)], False),
    "a part never reaches S3": (lambda: [Fault("drop_before", method="PUT", path="partNumber=3", times=None)], False),
    "a part always 500, the abort dropped once": (
        lambda: [Fault("status", method="PUT", path="partNumber=2", status=500, code="InternalError", times=None),
                 Fault("drop_before", method="DELETE", path=r"uploadId=")], False),
}


@pytest.mark.parametrize(("faults", "succeeds"), MULTIPART_FAULTS.values(), ids=MULTIPART_FAULTS.keys())
def test_a_multipart_upload_ends_whole_or_failed_and_leaves_no_parts(
    proxy, proxied_client, direct, bucket, big_file, faults, succeeds
):
    store = S3ArtifactStore(f"s3://{bucket}/root", client=proxied_client, read_retry=FAST_RETRY,
                            multipart_threshold=5 * 1024 * 1024)
    path, data = big_file
    put_direct(direct, bucket, "root/data.bin", OLD)
    injected = [proxy.inject(fault) for fault in faults()]
    if succeeds:
        assert store.write_file("data.bin", path).sha256 == digest(data)
    else:
        with pytest.raises(StorageError, match=r"root/data\.bin: upload failed"):
            store.write_file("data.bin", path)
    assert all(fault.applied for fault in injected)
    assert proxy.requests("POST", r"\?uploads"), "the upload went up in parts"
    assert get_direct(direct, bucket, "root/data.bin") == (data if succeeds else OLD)
    assert direct.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_batch_delete_that_skips_keys_raises_instead_of_reporting_success(store, direct, bucket, monkeypatch):
    put_direct(direct, bucket, "root/old/a.bin", b"a")
    refused = {"Errors": [{"Key": "root/old/a.bin", "Code": "AccessDenied", "Message": "Access Denied"}]}
    monkeypatch.setattr(store.client, "delete_objects", lambda **request: refused)  # S3 answers 200 with Errors
    with pytest.raises(StorageError, match=r"1 objects were not deleted: root/old/a\.bin \(AccessDenied\)"):
        store.delete_prefix("old")


def test_every_botocore_error_reaches_callers_as_storage_error(tmp_path):
    """No server at all: refused connections on every path are StorageErrors naming the key."""
    client = s3_client_for("http://127.0.0.1:9", max_attempts=1, connect_timeout=READ_TIMEOUT)
    store = S3ArtifactStore("s3://nowhere/root", client=client, read_retry=FAST_RETRY)
    calls: list[Callable[[], object]] = [
        *(lambda read=read: read(store, "data.bin", tmp_path) for read in READ_PATHS.values()),
        *(lambda call=call: call(store) for call in METADATA_CALLS.values()),
        lambda: store.write_bytes("data.bin", b"x"),
        lambda: store.delete_prefix("sub"),
    ]
    for call in calls:
        with pytest.raises(StorageError, match=r"root.*EndpointConnectionError"):
            call()


# --- a batch inference run under faults -------------------------------------------------------

def batch_config() -> Any:
    return parse_pipeline_config({
        "pipeline": "churn",
        "data": {"train": "train.parquet", "target": "label", "ids": ["customer"]},
        "model": {"flavor": "xgboost", "task": "binary_classification", "params": {"n_estimators": 10, "max_depth": 3}},
        "inference": {"input": "incoming/", "output": "scores/", "chunk_rows": 700},
    })


def batch_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    return pd.DataFrame({"customer": np.arange(rows) + seed * 100_000, "f0": x[:, 0], "f1": x[:, 1], "f2": x[:, 2],
                         "label": (x[:, 0] + x[:, 1] > 0).astype(int)})


@pytest.fixture
def batch_setup(direct, bucket, tmp_path) -> tuple[ModelRegistry, pd.DataFrame]:
    """A champion and three input parts written without faults, and the fault-free run's output."""
    clean = S3ArtifactStore(f"s3://{bucket}/root", client=direct)
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'registry.db'}")
    trained = train_model(batch_config(), batch_frame(400, 0), None, clean, output_prefix="models/v1")
    version = registry.register_version("churn", artifact_uri=trained.model_uri, artifact_sha256=trained.artifact.sha256,
                                        flavor="xgboost", task="binary_classification")
    registry.set_alias("churn", "champion", version.version, reason="test")
    for index in range(3):
        sink = pa.BufferOutputStream()
        part = batch_frame(1000, index + 1).drop(columns=["label"])
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), sink, row_group_size=250)
        clean.write_bytes(f"incoming/part-{index}.parquet", sink.getvalue().to_pybytes())
    return registry, run_batch_steps(clean, registry, "clean")


def run_batch_steps(store: S3ArtifactStore, registry: ModelRegistry, run_id: str) -> pd.DataFrame:
    plan = plan_batch(batch_config(), registry, store, run_id=run_id)
    commit_batch(plan, [score_chunk(plan, chunk.index, store) for chunk in plan.chunks], store)
    return read_output(plan.output_prefix, store).sort_values("customer", ignore_index=True)


def manifests(direct: Any, bucket: str) -> list[str]:
    listing = direct.list_objects_v2(Bucket=bucket, Prefix="root/scores/")
    return sorted(item["Key"] for item in listing.get("Contents", []) if item["Key"].endswith("_manifest.json"))


def test_a_batch_run_under_faults_that_end_commits_the_same_output(
    store, proxy, direct, bucket, batch_setup, monkeypatch
):
    registry, expected = batch_setup
    monkeypatch.setattr("airflow_mlops.inference.score._MODELS", {})  # load the model again, under faults
    for fault in [
        Fault("truncate", path=r"incoming/part-\d", times=3),
        Fault("status", method="HEAD", path=r"incoming/part-1", times=1),
        Fault("truncate", path=r"models/v1", times=1),
        Fault("drop_after", method="PUT", path=r"scores/faulty/part-", times=1),
        Fault("drop_before", method="PUT", path=r"_manifest\.json", times=1),
        Fault("truncate", path=r"scores/faulty/part-", times=1),
    ]:
        proxy.inject(fault)
    output = run_batch_steps(store, registry, "faulty")
    assert [(f.path, f.applied) for f in proxy.faults] == [(f.path, f.times) for f in proxy.faults]
    pd.testing.assert_frame_equal(output.drop(columns=["run_id"]), expected.drop(columns=["run_id"]))
    assert len(manifests(direct, bucket)) == 2


BATCH_PERSISTENT_FAULTS: dict[str, Callable[[], Fault]] = {
    "an input part always breaks": lambda: Fault("truncate", path=r"incoming/part-1", times=None),
    "a part upload never reaches S3": lambda: Fault("drop_before", method="PUT", path=r"scores/faulty/part-", times=None),
    "the manifest write always fails": lambda: Fault(
        "status", method="PUT", path=r"_manifest\.json", status=500, code="InternalError", times=None),
    "the commit cannot verify parts": lambda: Fault("truncate", path=r"scores/faulty/part-", times=None),
}


@pytest.mark.parametrize("fault", BATCH_PERSISTENT_FAULTS.values(), ids=BATCH_PERSISTENT_FAULTS.keys())
def test_a_batch_run_under_a_persistent_fault_raises_and_commits_nothing(
    store, proxy, direct, bucket, batch_setup, fault
):
    registry, _ = batch_setup
    before = manifests(direct, bucket)
    proxy.inject(fault())
    with pytest.raises(StorageError, match=r"s3://.*/root/(incoming|scores/faulty)/[\w.-]+: (reading|upload)"):
        run_batch_steps(store, registry, "faulty")
    assert manifests(direct, bucket) == before
