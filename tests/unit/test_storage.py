"""The artifact store contract, run against a local folder and a real S3 API (moto server)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from airflow_mlops.errors import (
    ArtifactNotFoundError,
    IntegrityError,
    StorageError,
    UnknownSchemeError,
    UnsafePathError,
)
from airflow_mlops.storage import (
    LocalArtifactStore,
    S3ArtifactStore,
    artifact_root,
    climbs_out,
    is_within,
    open_store,
    safe_key,
    sha256_bytes,
)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "root")
    client = request.getfixturevalue("s3_client")
    bucket = request.getfixturevalue("s3_bucket")
    return S3ArtifactStore(f"s3://{bucket}/mlops", client=client, multipart_threshold=5 * 1024 * 1024)


def test_write_returns_sha256_and_size_and_reads_back_verified(store):
    ref = store.write_bytes("runs/r1/model.bin", b"weights")
    assert ref.sha256 == sha256_bytes(b"weights") and ref.size == 7
    assert ref.uri == store.uri("runs/r1/model.bin")
    assert ref.uri.startswith(store.root)
    assert store.read_bytes(ref.uri, expected_sha256=ref.sha256) == b"weights"
    assert store.read_bytes("runs/r1/model.bin") == b"weights"
    assert store.size("runs/r1/model.bin") == 7
    assert store.sha256("runs/r1/model.bin") == ref.sha256


def test_tampered_content_raises_integrity_error_and_is_not_returned(store):
    ref = store.write_bytes("m.bin", b"good")
    store.write_bytes("m.bin", b"evil")  # someone replaced the object
    with pytest.raises(IntegrityError, match=ref.sha256):
        store.read_bytes("m.bin", expected_sha256=ref.sha256)


def test_download_removes_the_local_copy_when_the_hash_does_not_match(store, tmp_path):
    store.write_bytes("m.bin", b"evil")
    target = tmp_path / "copy.bin"
    with pytest.raises(IntegrityError):
        store.download("m.bin", target, expected_sha256=sha256_bytes(b"good"))
    assert not target.exists()
    with pytest.raises(IntegrityError), store.local_path("m.bin", expected_sha256=sha256_bytes(b"good")):
        pytest.fail("an unverified file must never be handed out")


def test_a_crash_mid_write_leaves_the_old_object_and_no_partial_file(store, monkeypatch, tmp_path):
    store.write_bytes("out/result.json", b'{"v": 1}')
    if isinstance(store, LocalArtifactStore):
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk gone")))
    else:
        monkeypatch.setattr(store.client, "put_object", lambda **kw: (_ for _ in ()).throw(OSError("network gone")))
    with pytest.raises(OSError):
        store.write_bytes("out/result.json", b'{"v": 2, "half": ')
    monkeypatch.undo()
    assert store.read_bytes("out/result.json") == b'{"v": 1}'
    assert store.list("out") == [store.uri("out/result.json")]


def test_list_exists_delete_and_delete_prefix(store):
    for key in ("p/a.txt", "p/sub/b.txt", "p2/c.txt"):
        store.write_bytes(key, b"x")
    assert store.list("p") == [store.uri("p/a.txt"), store.uri("p/sub/b.txt")]
    assert store.exists("p/a.txt") and not store.exists("p/zzz.txt")
    assert store.is_dir("p") and not store.is_dir("p/a.txt")
    store.delete("p/a.txt")
    store.delete("p/a.txt")  # deleting twice is fine
    assert not store.exists("p/a.txt")
    assert store.delete_prefix("p") == 1
    assert store.list("p") == [] and store.list("p2") == [store.uri("p2/c.txt")]


def test_missing_objects_raise_not_found(store):
    with pytest.raises(ArtifactNotFoundError):
        store.read_bytes("nope.bin")
    with pytest.raises(ArtifactNotFoundError):
        store.size("nope.bin")


def test_unknown_schemes_are_refused(store):
    with pytest.raises(UnknownSchemeError, match="gs://"):
        store.uri("gs://bucket/key")


def test_large_files_go_up_in_multipart_and_come_back_whole(store, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024 + 123))
    ref = store.write_file("models/big.bin", big)
    assert ref.size == big.stat().st_size
    copy = tmp_path / "back.bin"
    store.download("models/big.bin", copy, expected_sha256=ref.sha256)
    assert copy.read_bytes() == big.read_bytes()


def test_s3_multipart_is_really_used_above_the_threshold(s3_client, s3_bucket, tmp_path, monkeypatch):
    store = S3ArtifactStore(f"s3://{s3_bucket}", client=s3_client, multipart_threshold=5 * 1024 * 1024)
    calls = []
    original = s3_client.create_multipart_upload
    monkeypatch.setattr(s3_client, "create_multipart_upload", lambda **kw: calls.append(kw) or original(**kw))
    big = tmp_path / "big.bin"
    big.write_bytes(b"a" * (11 * 1024 * 1024))
    store.write_file("big.bin", big)
    assert len(calls) == 1
    head = s3_client.head_object(Bucket=s3_bucket, Key="big.bin")
    assert head["Metadata"]["sha256"] == sha256_bytes(big.read_bytes())


def test_open_read_seeks_and_reads_any_range(store):
    data = os.urandom(3 * 1024 * 1024 + 17)
    store.write_bytes("blob.bin", data)
    with store.open_read("blob.bin") as handle:
        assert handle.seek(0, os.SEEK_END) == len(data)
        handle.seek(-17, os.SEEK_END)
        assert handle.read() == data[-17:]
        handle.seek(1000)
        assert handle.read(10) == data[1000:1010]
        assert handle.read(2 * 1024 * 1024) == data[1010 : 1010 + 2 * 1024 * 1024]
        handle.seek(0)
        assert handle.read() == data
    with pytest.raises(ArtifactNotFoundError), store.open_read("nothing.bin"):
        pytest.fail("a missing object has no reader")


def test_a_rewritten_object_gets_a_new_version_and_the_old_one_cannot_be_read(store):
    store.write_bytes("data.bin", b"first")
    first = store.version("data.bin")
    assert store.version("data.bin") == first
    with store.open_read("data.bin", expected_version=first) as handle:
        assert handle.read() == b"first"
    store.write_bytes("data.bin", b"other")
    assert store.version("data.bin") != first
    with pytest.raises(StorageError, match="rewritten after version"), store.open_read("data.bin", expected_version=first):
        pytest.fail("an old version must not be handed out")


def test_s3_open_read_fetches_only_the_ranges_read(s3_client, s3_bucket, monkeypatch):
    store = S3ArtifactStore(f"s3://{s3_bucket}", client=s3_client)
    data = os.urandom(40 * 1024 * 1024)
    store.write_bytes("big.bin", data)
    fetched = []
    original = s3_client.get_object
    monkeypatch.setattr(s3_client, "get_object", lambda **kw: fetched.append(kw["Range"]) or original(**kw))
    with store.open_read("big.bin") as handle:
        handle.seek(-8, os.SEEK_END)
        assert handle.read() == data[-8:]
        handle.seek(20 * 1024 * 1024)
        assert handle.read(100) == data[20 * 1024 * 1024 : 20 * 1024 * 1024 + 100]
    sizes = [int(end) - int(start) + 1 for start, end in (r.removeprefix("bytes=").split("-") for r in fetched)]
    assert len(fetched) == 2 and sum(sizes) <= 2 * 1024 * 1024  # the tail, and one buffer: not 40 MB


def test_s3_open_read_refuses_an_object_replaced_mid_read(s3_client, s3_bucket):
    store = S3ArtifactStore(f"s3://{s3_bucket}", client=s3_client)
    store.write_bytes("data.bin", b"a" * 100)
    with store.open_read("data.bin") as handle:
        store.write_bytes("data.bin", b"b" * 100)
        with pytest.raises(StorageError, match="replaced while it was being read"):
            handle.read()


def test_json_round_trip(store):
    ref = store.write_json("m.json", {"b": 1, "a": [1, 2]})
    assert store.read_json("m.json", expected_sha256=ref.sha256) == {"a": [1, 2], "b": 1}


def test_local_paths_and_file_uris_resolve_to_the_same_object(tmp_path):
    store = LocalArtifactStore(tmp_path)
    ref = store.write_bytes("a/b.txt", b"1")
    assert store.read_bytes(f"file://{tmp_path}/a/b.txt") == b"1"
    assert store.read_bytes(str(tmp_path / "a" / "b.txt")) == b"1"
    assert ref.uri == str(tmp_path / "a" / "b.txt")


def test_s3_store_refuses_local_paths(s3_client, s3_bucket):
    store = S3ArtifactStore(f"s3://{s3_bucket}/root", client=s3_client)
    with pytest.raises(StorageError, match="local path"):
        store.read_bytes("/etc/passwd")


def test_artifact_root_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_MLOPS_HOME", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "af"))
    assert artifact_root() == str(tmp_path / "af" / "mlops")
    monkeypatch.delenv("AIRFLOW_HOME")
    assert artifact_root() == str(Path.home() / ".airflow_mlops")
    monkeypatch.setenv("AIRFLOW_MLOPS_HOME", "s3://bucket/prefix/")
    assert artifact_root() == "s3://bucket/prefix"
    monkeypatch.setenv("AIRFLOW_MLOPS_HOME", "gs://bucket")
    with pytest.raises(UnknownSchemeError):
        artifact_root()


def test_open_store_picks_the_implementation(tmp_path, s3_client, s3_bucket):
    assert isinstance(open_store(str(tmp_path)), LocalArtifactStore)
    assert isinstance(open_store(f"s3://{s3_bucket}/x", s3_client=s3_client), S3ArtifactStore)


# ------------------------------------------------------------------ containment and temporaries


@pytest.mark.parametrize("value", ["", ".", "..", "...", "x" * 201])
def test_safe_key_refuses_what_cannot_name_a_folder_of_its_own(value):
    with pytest.raises(UnsafePathError, match="run id"):
        safe_key(value)


@pytest.mark.parametrize(("value", "segment"), [
    ("../..", ".._.."), ("a/b", "a_b"), ("/etc", "_etc"), ("a\\..\\b", "a_.._b"), ("..x", "..x"),
    ("manual__2026-01-01T00:00:00+00:00", "manual__2026-01-01T00_00_00_00_00"),
])
def test_safe_key_encodes_separators_into_one_segment(value, segment):
    assert safe_key(value) == segment


@pytest.mark.parametrize(("prefix", "target", "inside"), [
    ("/r/scores/run", "/r/scores/run/part-00000.parquet", True),
    ("/r/scores/run", "/r/scores/run/../other/part-00000.parquet", False),
    ("/r/scores/run", "/r/scores/runner/x", False),
    ("/r/scores/run", "/r/scores/run", False),
    ("s3://b/r/run", "s3://b/r/run/x", True),
    ("s3://b/r/run", "s3://other/r/run/x", False),
    ("s3://b/r/run", "/r/run/x", False),
])
def test_is_within_resolves_dots_and_compares_whole_segments(prefix, target, inside):
    assert is_within(prefix, target) is inside


def test_is_within_or_equal_counts_the_prefix_itself():
    assert is_within("/r/a", "/r/a/", or_equal=True) and is_within("s3://b", "s3://b/k", or_equal=True)
    assert not is_within("/r/a", "/r/b", or_equal=True)


@pytest.mark.parametrize(("path", "out"), [("../x", True), ("a/../../x", True), ("..", True), ("a/../b", False),
                                            ("scores/", False), ("/abs/../x", False), ("s3://b/../x", False)])
def test_climbs_out(path, out):
    assert climbs_out(path) is out


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_local_write_removes_only_its_own_hour_old_leftovers(tmp_path):
    store = LocalArtifactStore(tmp_path / "root")
    folder = tmp_path / "root" / "run"
    folder.mkdir(parents=True)
    old_own, fresh_own, old_other = (folder / ".tmp-model.json-aaaa", folder / ".tmp-model.json-bbbb",
                                     folder / ".tmp-metrics.json-cccc")
    for leftover in (old_own, fresh_own, old_other):
        leftover.write_bytes(b"half")
    _age(old_own, 2 * 3600)
    _age(old_other, 2 * 3600)
    store.write_bytes("run/model.json", b"{}")
    assert not old_own.exists(), "an hour-old leftover of the same object is a killed write's"
    assert fresh_own.exists(), "a fresh one may be a concurrent write of the same object"
    assert old_other.exists(), "another object's leftovers are its own writer's business"
    assert store.list("run") == [store.uri("run/model.json")]


def test_remove_stale_temporaries_takes_only_temporaries_directly_in_the_folder(tmp_path):
    store = LocalArtifactStore(tmp_path / "root")
    folder = tmp_path / "root" / "run"
    (folder / "sub").mkdir(parents=True)
    kept = [folder / "part-00000.parquet", folder / "notes.tmp-x", folder / "sub" / ".tmp-part-00001.parquet-zz"]
    for path in [*kept, folder / ".tmp-part-00000.parquet-aa", folder / ".tmp-part-00001.parquet-bb"]:
        path.write_bytes(b"x")
    (folder / ".tmp-a-folder").mkdir()
    assert store.remove_stale_temporaries("run", "part-00001.parquet") == [str(folder / ".tmp-part-00001.parquet-bb")]
    assert store.remove_stale_temporaries("run") == [str(folder / ".tmp-part-00000.parquet-aa")]
    assert all(path.exists() for path in kept) and (folder / ".tmp-a-folder").is_dir()
    assert store.remove_stale_temporaries("no-such-folder") == []


def test_local_staging_is_beside_the_key_and_a_retry_removes_a_killed_trys_file(tmp_path):
    store = LocalArtifactStore(tmp_path / "root")
    with store.staging_file("run/part-00000.parquet", suffix=".parquet") as killed:
        Path(killed).write_bytes(b"half")
        os.link(killed, tmp_path / "survivor")  # what a SIGKILL would have left in place
    os.replace(tmp_path / "survivor", killed)
    assert Path(killed).parent == tmp_path / "root" / "run" and Path(killed).name.startswith(".tmp-part-00000.parquet-")
    with store.staging_file("run/part-00000.parquet", stale_after=0) as temp:
        assert not Path(killed).exists()
        Path(temp).write_bytes(b"whole")
        ref = store.write_file("run/part-00000.parquet", temp, move=True)
    assert store.read_bytes(ref.uri) == b"whole" and sorted(os.listdir(tmp_path / "root" / "run")) == ["part-00000.parquet"]


def test_s3_staging_uses_a_key_named_local_file_that_the_next_try_cleans(tmp_path, monkeypatch):
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    store = S3ArtifactStore("s3://bucket/root", client=object())  # staging never talks to S3
    with store.staging_file("run/part-00000.parquet") as first:
        Path(first).write_bytes(b"half")
        os.link(first, system_temp / "survivor")
    os.replace(system_temp / "survivor", first)
    with store.staging_file("run/part-00001.parquet", stale_after=0) as other:
        assert Path(first).exists(), "another key's file is not this try's to remove"
    with store.staging_file("run/part-00000.parquet", stale_after=0) as retry:
        assert not Path(first).exists() and Path(retry).parent == system_temp
    assert os.listdir(system_temp) == [] and not Path(other).exists()
    assert store.remove_stale_temporaries("run") == [], "S3 writes leave no temporary keys"
