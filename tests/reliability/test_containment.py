"""Batch inference stays inside the run's own folder: run ids, output paths, cleanup and temporaries.

Each case builds an artifact root that holds what a real one does (a registry database, models, the
input and another run's committed output), runs the hostile input, and asserts a named error and
that a snapshot (every path and its sha256) of everything outside the run's folder is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.errors import UnsafePathError
from airflow_mlops.inference import commit_batch, plan_batch, read_output, score_chunk
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage import LocalArtifactStore, S3ArtifactStore
from airflow_mlops.training import train_model

REPO = Path(__file__).resolve().parents[2]


def config(**inference: object):
    return parse_pipeline_config({
        "pipeline": "churn",
        "data": {"train": "train.parquet", "target": "label", "ids": ["customer"]},
        "model": {"flavor": "xgboost", "task": "binary_classification", "params": {"n_estimators": 5, "max_depth": 2}},
        "inference": {"input": "incoming/", "output": "scores/", "chunk_rows": 300, **inference},
    })


def run_batch(cfg, registry, store, *, run_id: str, **plan_options: object):
    """Plan, score every chunk and commit in this process, as the batch-inference DAG does across tasks."""
    plan = plan_batch(cfg, registry, store, run_id=run_id, **plan_options)
    return commit_batch(plan, [score_chunk(plan, chunk.index, store) for chunk in plan.chunks], store)


def frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    return pd.DataFrame({"customer": np.arange(rows) + seed * 100_000, **{f"f{i}": x[:, i] for i in range(4)},
                         "label": (x[:, 0] + x[:, 1] > 0).astype(int)})


def parquet(df: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink, row_group_size=150)
    return sink.getvalue().to_pybytes()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones included) with its sha256, and every folder."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        found[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<folder>"
    return found


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    """A root like a real one: a registry database, a model, the input, another run's committed output."""
    store = LocalArtifactStore(tmp_path / "root")
    store.write_bytes("registry.db", b"SQLite format 3\x00 not to be deleted")
    for index in range(2):
        store.write_bytes(f"incoming/part-{index}.parquet", parquet(frame(300, seed=index + 1).drop(columns=["label"])))
    return store


@pytest.fixture
def registry(store: LocalArtifactStore, tmp_path: Path) -> ModelRegistry:
    # The live registry sits beside the root: reading it (WAL mode) touches its files.
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'registry.db'}")
    trained = train_model(config(), frame(400), None, store, output_prefix="models/v1")
    version = registry.register_version("churn", artifact_uri=trained.model_uri, artifact_sha256=trained.artifact.sha256,
                                        flavor="xgboost", task="binary_classification")
    registry.set_alias("churn", "champion", version.version, reason="test")
    run_batch(config(), registry, store, run_id="other-run")
    return registry


@pytest.mark.parametrize("run_id", ["..", ".", "", "..."])
def test_a_run_id_that_names_no_folder_of_its_own_is_refused_and_nothing_changes(store, registry, tmp_path, run_id):
    before = snapshot(tmp_path)
    with pytest.raises(UnsafePathError, match="run id"):
        run_batch(config(), registry, store, run_id=run_id)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("run_id", "folder"), [("../..", ".._.."), ("/", "_"), ("a/../../b", "a_.._.._b"),
                                                ("manual__2026-01-01T00:00:00+00:00", "manual__2026-01-01T00_00_00_00_00")])
def test_a_run_id_with_separators_becomes_one_folder_of_its_own(store, registry, tmp_path, run_id, folder):
    before = snapshot(tmp_path)
    plan = plan_batch(config(), registry, store, run_id=run_id)
    assert plan.output_prefix == store.uri(f"scores/{folder}")
    commit_batch(plan, [score_chunk(plan, c.index, store) for c in plan.chunks], store)
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith(f"root/scores/{folder}")} == before


@pytest.mark.parametrize("output", ["../outside", "scores/../../outside", "..", "/", ".", "./"])
def test_an_output_outside_or_at_the_artifact_root_is_refused(store, registry, tmp_path, output):
    before = snapshot(tmp_path)
    with pytest.raises(UnsafePathError, match="inference output"):
        run_batch(config(), registry, store, run_id="r1", output_uri=output)
    assert snapshot(tmp_path) == before


def test_an_absolute_output_elsewhere_stays_allowed(store, registry, tmp_path):
    elsewhere = tmp_path / "exports"
    run_batch(config(), registry, store, run_id="r1", output_uri=str(elsewhere))
    assert len(read_output(str(elsewhere / "r1"), store)) == 600


def test_an_input_inside_the_output_folder_is_refused(store, registry, tmp_path):
    # Named like parts: a commit of run "r1" into scores/ would have replaced or deleted them.
    for index in range(2):
        store.write_bytes(f"scores/r1/part-{index:05d}.parquet", parquet(frame(300, seed=5 + index).drop(columns=["label"])))
    before = snapshot(tmp_path)
    with pytest.raises(UnsafePathError, match="lies inside the output prefix"):
        run_batch(config(input="scores/r1/"), registry, store, run_id="r1")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("edit", ["root", "above-root", "other-run", "input"])
def test_a_plan_edited_on_its_way_to_a_worker_cannot_reach_outside_its_run(store, registry, tmp_path, edit):
    plan = plan_batch(config(), registry, store, run_id="r1")
    results = [score_chunk(plan, chunk.index, store) for chunk in plan.chunks]
    # The plan travels through XCom and the store: whoever can edit it must not redirect deletes.
    edited = plan.to_dict()
    if edit == "root":
        edited["output_prefix"] = store.root
    elif edit == "above-root":
        edited.update(output_prefix=str(tmp_path), run_id=tmp_path.name)
    elif edit == "other-run":
        edited["output_prefix"] = store.uri("scores/other-run")
    else:
        edited["output_prefix"] = store.uri("incoming")
    before = snapshot(tmp_path)
    with pytest.raises(UnsafePathError, match="output prefix"):
        commit_batch(edited, results, store)
    with pytest.raises(UnsafePathError, match="output prefix"):
        score_chunk(edited, 0, store)
    assert snapshot(tmp_path) == before


def test_commit_deletes_its_own_stale_parts_and_nothing_else(store, registry, tmp_path):
    small = plan_batch(config(chunk_rows=150), registry, store, run_id="r1")
    for chunk in small.chunks:
        score_chunk(small, chunk.index, store)
    big = plan_batch(config(chunk_rows=600), registry, store, run_id="r1")
    assert len(big.chunks) < len(small.chunks)
    prefix = Path(big.output_prefix)
    keep = {"notes.txt": b"the analyst's notes", "extra/part-00009.parquet": b"a user's sub-folder",
            "part-1.parquet": b"not our naming", "_manifest.json.bak": b"a backup", "part-00001.parquet.old": b"x"}
    for name, data in keep.items():
        store.write_bytes(f"{big.output_prefix}/{name}", data)
    store.write_json(f"{big.output_prefix}/_manifest.json", {"format": 1, "parts": []})  # an earlier commit's
    outside = snapshot(tmp_path / "root" / "incoming") | snapshot(tmp_path / "root" / "models")
    manifest = store.read_json(commit_batch(big, [score_chunk(big, c.index, store) for c in big.chunks], store).uri)
    for name, data in keep.items():
        assert (prefix / name).read_bytes() == data, f"{name} is not this run's to delete"
    parts = sorted(p.name for p in prefix.glob("part-?????.parquet"))
    assert parts == [f"part-{c.index:05d}.parquet" for c in big.chunks], "stale parts of the earlier plan are gone"
    assert sorted(Path(u).name for u in manifest["removed_stale"]) == sorted(
        ["_manifest.json", *(f"part-{c.index:05d}.parquet" for c in small.chunks[len(big.chunks):])])
    assert len(read_output(big.output_prefix, store)) == 600
    assert snapshot(tmp_path / "root" / "incoming") | snapshot(tmp_path / "root" / "models") == outside


def _kill_mid_write(store: LocalArtifactStore, key: str, how: str) -> None:
    """Start writing `key` in another process and SIGKILL it half-way, as the OOM killer would."""
    staging = f"store.staging_file({key!r}, stale_after=0)" if how == "staging" else "store._temporary(Path(store.uri(" + repr(key) + ")))"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from airflow_mlops.storage import LocalArtifactStore
        store = LocalArtifactStore({store.root!r})
        handle = {staging}
        temp = handle.__enter__() if hasattr(handle, "__enter__") else handle[1]
        Path(temp).write_bytes(b"half a part")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()


@pytest.mark.parametrize("how", ["staging", "write"])
def test_a_killed_writes_temporary_is_removed_by_the_retry_and_by_the_commit(store, registry, tmp_path, how):
    plan = plan_batch(config(), registry, store, run_id="r1")
    prefix = Path(plan.output_prefix)
    _kill_mid_write(store, plan.part_uri(0), how)
    _kill_mid_write(store, plan.part_uri(1), how)
    leftovers = sorted(p.name for p in prefix.glob(".tmp-*"))
    assert [name.split(".parquet-")[0] for name in leftovers] == [".tmp-part-00000", ".tmp-part-00001"]
    assert store.list(plan.output_prefix) == [], "a temporary is never listed"
    results = [score_chunk(plan, 0, store)]
    assert sorted(p.name for p in prefix.glob(".tmp-*")) == leftovers[1:], "the retry of chunk 0 removed its own"
    results += [score_chunk(plan, c.index, store) for c in plan.chunks[1:]]
    (prefix / ".tmp-_manifest.json-zz9").write_bytes(b"{")  # a killed manifest write of an earlier commit
    manifest = store.read_json(commit_batch(plan, results, store).uri)
    assert list(prefix.glob(".tmp-*")) == [], "the commit removed every temporary left in the run's folder"
    assert {Path(u).name for u in manifest["removed_stale"]} >= {".tmp-_manifest.json-zz9"}


@pytest.fixture(params=["local", "s3"])
def any_store(request, store, registry):
    if request.param == "local":
        return store, registry
    s3 = S3ArtifactStore(f"s3://{request.getfixturevalue('s3_bucket')}/root", client=request.getfixturevalue("s3_client"))
    trained = train_model(config(), frame(400), None, s3, output_prefix="models/v1")
    version = registry.register_version("churn", artifact_uri=trained.model_uri, artifact_sha256=trained.artifact.sha256,
                                        flavor="xgboost", task="binary_classification")
    registry.set_alias("churn", "champion", version.version, reason="test")
    for index in range(2):
        s3.write_bytes(f"incoming/part-{index}.parquet", parquet(frame(300, seed=index + 1).drop(columns=["label"])))
    return s3, registry


def test_scoring_leaves_nothing_in_the_system_temp_folder(any_store, tmp_path, monkeypatch):
    from airflow_mlops.refs import GateResult

    store, registry = any_store
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_temp))
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    seen_while_scoring: set[str] = set()

    def look_at_the_temp_folder(df: pd.DataFrame) -> GateResult:
        seen_while_scoring.update(os.listdir(system_temp))
        return GateResult(gate="validation", passed=True)

    plan = plan_batch(config(), registry, store, run_id="r-temp")
    results = [score_chunk(plan, c.index, store, validate=look_at_the_temp_folder) for c in plan.chunks]
    commit_batch(plan, results, store)
    assert os.listdir(system_temp) == []
    if isinstance(store, LocalArtifactStore):
        assert seen_while_scoring == set(), "a local store stages beside the part, never in the system temp folder"
        assert list(Path(plan.output_prefix).glob(".tmp-*")) == []
    else:  # an upload needs a local file: one per part, named after it so that a retry finds a killed one's
        assert seen_while_scoring and all(name.startswith("airflow-mlops-staging-") for name in seen_while_scoring)


@pytest.mark.parametrize(("step", "argument"), [("train", "data_uri"), ("plan", "input_uri"), ("drift", "current_uri")])
def test_a_trigger_time_location_meets_the_pipeline_files_rules(store, registry, step, argument):
    """The Trigger form's `training_data`, `input` and `current` Params reach the steps unchecked by the schema."""
    from airflow_mlops import steps
    from airflow_mlops.errors import ConfigError

    (Path(store.root).parent / "outside.parquet").write_bytes(parquet(frame(300)))
    before = snapshot(Path(store.root))
    calls = {
        "train": lambda: steps.train_and_register(config(), store, registry, data_uri="../outside.parquet", prefix="run",
                                                  lineage={"dag_id": "d", "run_id": "r", "task_id": "t"}),
        "plan": lambda: steps.plan_scoring(config(), store, registry, pinned={"version": 1}, run_id="r",
                                                   input_uri="../outside.parquet", plan_path="plan.json"),
        "drift": lambda: steps.check_pipeline_drift(config(), store, registry, current_uri="../outside.parquet",
                                                    report_path="report.html"),
    }
    with pytest.raises(ConfigError, match=r"the relative path '\.\./outside\.parquet' climbs out of the artifact root"):
        calls[step]()
    assert snapshot(Path(store.root)) == before
