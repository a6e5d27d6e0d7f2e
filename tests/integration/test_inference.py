"""Batch inference: pinned version, chunking within Airflow's limit, retries, manifest last."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.errors import DataError, StorageError
from airflow_mlops.inference import commit_batch, cut_chunks, plan_batch, read_output, score_chunk
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage import LocalArtifactStore, S3ArtifactStore
from airflow_mlops.training import load_model, train_model


def config(**inference):
    return parse_pipeline_config({
        "pipeline": "churn",
        "data": {"train": "train.parquet", "target": "label", "ids": ["customer"]},
        "model": {"flavor": "xgboost", "task": "binary_classification", "params": {"n_estimators": 15, "max_depth": 3}},
        "inference": {"input": "incoming/", "output": "scores/", "chunk_rows": 700, **inference},
    })


def frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    return pd.DataFrame({"customer": np.arange(rows) + seed * 100_000, "f0": x[:, 0], "f1": x[:, 1], "f2": x[:, 2],
                         "f3": x[:, 3], "label": (x[:, 0] + x[:, 1] > 0).astype(int)})


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "root")
    return S3ArtifactStore(f"s3://{request.getfixturevalue('s3_bucket')}/root", client=request.getfixturevalue("s3_client"))


@pytest.fixture
def champion(store, tmp_path):
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'registry.db'}")
    cfg = config()
    trained = train_model(cfg, frame(600), None, store, output_prefix="models/v1")
    version = registry.register_version("churn", artifact_uri=trained.model_uri, artifact_sha256=trained.artifact.sha256,
                                        flavor="xgboost", task="binary_classification")
    registry.set_alias("churn", "champion", version.version, reason="test")
    return registry


def write_input(store, parts: int = 3, rows: int = 1000, row_group_size: int = 250) -> pd.DataFrame:
    frames = []
    for index in range(parts):
        part = frame(rows, seed=index + 1).drop(columns=["label"])
        local = pa.Table.from_pandas(part, preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(local, sink, row_group_size=row_group_size)
        store.write_bytes(f"incoming/part-{index}.parquet", sink.getvalue().to_pybytes())
        frames.append(part)
    return pd.concat(frames, ignore_index=True)


def run_all(plan, store):
    return commit_batch(plan, [score_chunk(plan, c.index, store) for c in plan.chunks], store)


def test_every_input_row_is_scored_once_with_the_champions_predictions(store, champion):
    inputs = write_input(store)
    plan = plan_batch(config(), champion, store, run_id="manual__2026-01-01T00:00:00+00:00")
    assert plan.model_version == 1 and sum(c.rows for c in plan.chunks) == 3000
    assert all(c.rows >= 700 for c in plan.chunks[:-1])
    manifest = run_all(plan, store)
    output = read_output(plan.output_prefix, store)
    assert len(output) == len(inputs)
    assert sorted(output["customer"]) == sorted(inputs["customer"])
    model = load_model(plan.artifact_uri, store, expected_sha256=plan.artifact_sha256)
    expected = model.predict_proba(inputs)[:, 1]
    merged = inputs[["customer"]].assign(expected=expected).merge(output, on="customer")
    np.testing.assert_allclose(merged["proba_1"], merged["expected"], rtol=1e-5)
    assert set(output["model_version"]) == {1} and set(output["run_id"]) == {plan.run_id}
    body = store.read_json(manifest.uri)
    assert body["total_rows"] == 3000 and body["model"]["version"] == 1
    assert [p["rows"] for p in body["parts"]] == [c.rows for c in plan.chunks]


def test_the_version_is_pinned_at_planning(store, champion):
    write_input(store, parts=1)
    plan = plan_batch(config(), champion, store, run_id="r1")
    trained = train_model(config(), frame(600, seed=9), None, store, output_prefix="models/v2")
    v2 = champion.register_version("churn", artifact_uri=trained.model_uri, artifact_sha256=trained.artifact.sha256,
                                   flavor="xgboost", task="binary_classification")
    champion.set_alias("churn", "champion", v2.version, reason="promoted mid-run")
    run_all(plan, store)
    assert set(read_output(plan.output_prefix, store)["model_version"]) == {1}


def test_chunks_never_exceed_airflows_mapping_limit():
    pieces = [(f"f{i // 10}.parquet", "v1", i % 10, 100) for i in range(5000)]
    target, chunks = cut_chunks(pieces, chunk_rows=100)
    assert len(chunks) <= 1024 and target >= 100
    assert sum(c.rows for c in chunks) == 500_000
    covered = [(p.uri, g) for c in chunks for p in c.parts for g in p.row_groups]
    assert covered == [(u, g) for u, _, g, _ in pieces], "every row group exactly once, in order"


class _SlowFirstStore(LocalArtifactStore):
    """Answers `version` slowest for the first parts, and counts how many calls overlap."""

    def __init__(self, root, parts: int) -> None:
        import threading

        super().__init__(root)
        self.parts, self.lock, self.active, self.most = parts, threading.Lock(), 0, 0

    def version(self, path: str) -> str:
        import time

        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        index = int(path.rsplit("part-", 1)[1].split(".")[0])
        time.sleep(0.01 * (self.parts - index))
        with self.lock:
            self.active -= 1
        return super().version(path)


def test_planning_reads_parts_concurrently_and_keeps_their_order(tmp_path):
    store = _SlowFirstStore(tmp_path / "root", parts=12)
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'registry.db'}")
    trained = train_model(config(), frame(600), None, store, output_prefix="models/v1")
    version = registry.register_version("churn", artifact_uri=trained.model_uri, artifact_sha256=trained.artifact.sha256,
                                        flavor="xgboost", task="binary_classification")
    registry.set_alias("churn", "champion", version.version, reason="test")
    for index in range(12):  # part-10 and part-11 sort between part-1 and part-2
        store.write_bytes(f"incoming/part-{index}.parquet", _parquet(frame(100, seed=index + 1).drop(columns=["label"])))
    plan = plan_batch(config(chunk_rows=100), registry, store, run_id="r-order")
    assert store.most > 1, "footers are read on several threads"
    assert [p.uri for c in plan.chunks for p in c.parts] == store.list("incoming/")
    assert [c.rows for c in plan.chunks] == [100] * 12


def test_an_input_file_rewritten_after_planning_is_refused_not_mixed(store, champion):
    write_input(store, parts=2)
    plan = plan_batch(config(), champion, store, run_id="r-changed")
    first = score_chunk(plan, 0, store)
    # Same shape, other values: only the file's version tells the difference.
    replacement = frame(1000, seed=42).drop(columns=["label"])
    store.write_bytes("incoming/part-1.parquet", _parquet(replacement))
    later = [c for c in plan.chunks if any(p.uri.endswith("part-1.parquet") for p in c.parts)]
    with pytest.raises(StorageError, match=r"part-1.parquet was rewritten after version"):
        score_chunk(plan, later[0].index, store)
    assert first.rows == plan.chunks[0].rows
    assert not store.exists(plan.manifest_uri)
    replanned = plan_batch(config(), champion, store, run_id="r-changed")
    assert replanned.input_fingerprint != plan.input_fingerprint
    manifest = store.read_json(run_all(replanned, store).uri)
    assert manifest["input"]["fingerprint"] == replanned.input_fingerprint
    assert [f["uri"] for f in manifest["input"]["files"]] == [store.uri(f"incoming/part-{i}.parquet") for i in (0, 1)]
    assert sorted(read_output(replanned.output_prefix, store)["customer"]) == sorted(
        [*frame(1000, seed=1)["customer"], *replacement["customer"]])


def test_the_input_fingerprint_is_stable_for_unchanged_input(store, champion):
    write_input(store, parts=2)
    one = plan_batch(config(), champion, store, run_id="r-a")
    two = plan_batch(config(chunk_rows=300), champion, store, run_id="r-b")
    assert one.input_fingerprint == two.input_fingerprint, "chunking is not part of the input's identity"


def test_a_bad_chunk_fails_with_a_named_error_and_nothing_is_committed(store, champion):
    write_input(store, parts=2, rows=800)
    bad = frame(800, seed=7).drop(columns=["label", "f2"])
    store.write_bytes("incoming/part-9.parquet", _parquet(bad))
    plan = plan_batch(config(), champion, store, run_id="r-bad")
    results = []
    with pytest.raises(DataError, match=r"chunk \d+ \(.*part-9.parquet\): missing feature column 'f2'"):
        for chunk in plan.chunks:
            results.append(score_chunk(plan, chunk.index, store))
    with pytest.raises(DataError, match="has no result"):
        commit_batch(plan, results, store)
    assert not store.exists(plan.manifest_uri)
    with pytest.raises(DataError, match="never committed"):
        read_output(plan.output_prefix, store)
    wrong_dtype = frame(100, seed=8).drop(columns=["label"]).assign(f1="high")
    store.write_bytes("other/part-0.parquet", _parquet(wrong_dtype))
    plan = plan_batch(config(input="other/"), champion, store, run_id="r-dtype")
    with pytest.raises(DataError, match="'f1' is object, expected a number"):
        score_chunk(plan, 0, store)


def test_csv_parts_are_scored_and_checked_like_parquet(store, champion):
    inputs = frame(900, seed=3).drop(columns=["label"])
    store.write_bytes("csv-in/part-0.csv", inputs.to_csv(index=False).encode())
    plan = plan_batch(config(input="csv-in/"), champion, store, run_id="r-csv")
    run_all(plan, store)
    output = read_output(plan.output_prefix, store).merge(inputs, on="customer")
    assert len(output) == 900
    model = load_model(plan.artifact_uri, store, expected_sha256=plan.artifact_sha256)
    np.testing.assert_allclose(output["proba_1"], model.predict_proba(output)[:, 1], rtol=1e-5)
    store.write_bytes("csv-bad/part-0.csv", inputs.drop(columns=["f3"]).to_csv(index=False).encode())
    plan = plan_batch(config(input="csv-bad/"), champion, store, run_id="r-csv-bad")
    with pytest.raises(DataError, match=r"chunk 0 \(.*part-0.csv\): missing feature column 'f3'"):
        score_chunk(plan, 0, store)


def test_a_killed_and_retried_chunk_leaves_exactly_one_copy(store, champion, monkeypatch):
    inputs = write_input(store)
    plan = plan_batch(config(), champion, store, run_id="r-retry")
    from airflow_mlops.inference import score as scoring

    original = scoring._output_table
    calls = {"n": 0}

    def die_mid_chunk(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("worker killed")
        return original(*args)

    monkeypatch.setattr(scoring, "_output_table", die_mid_chunk)
    with pytest.raises(KeyboardInterrupt):
        score_chunk(plan, 0, store, batch_rows=200)
    monkeypatch.setattr(scoring, "_output_table", original)
    assert not store.exists(plan.part_uri(0)), "a killed chunk leaves no part behind"
    results = [score_chunk(plan, c.index, store) for c in plan.chunks]
    results.append(score_chunk(plan, 0, store))  # a retry of an already finished chunk
    commit_batch(plan, results, store)
    output = read_output(plan.output_prefix, store)
    assert len(output) == len(inputs) and output["customer"].is_unique


def test_a_rerun_with_fewer_chunks_leaves_no_stale_parts(store, champion):
    write_input(store)
    small = plan_batch(config(chunk_rows=300), champion, store, run_id="r-same")
    for chunk in small.chunks:
        score_chunk(small, chunk.index, store)
    big = plan_batch(config(chunk_rows=1500), champion, store, run_id="r-same")
    assert len(big.chunks) < len(small.chunks)
    run_all(big, store)
    parts = [u for u in store.list(big.output_prefix) if u.endswith(".parquet")]
    assert len(parts) == len(big.chunks)
    assert len(read_output(big.output_prefix, store)) == 3000


def test_validation_before_scoring_stops_a_bad_chunk(store, champion):
    from airflow_mlops.refs import GateResult

    write_input(store, parts=1)
    plan = plan_batch(config(), champion, store, run_id="r-val")

    def reject_negative(df):
        bad = int((df["f0"] < -2).sum())
        return GateResult(gate="validation", passed=bad == 0, failures=[f"between(f0): {bad} values below -2"])

    with pytest.raises(DataError, match=r"failed validation: between\(f0\)"):
        for chunk in plan.chunks:
            score_chunk(plan, chunk.index, store, validate=reject_negative)


def test_on_s3_planning_reads_footers_and_a_chunk_reads_its_own_row_groups(s3_client, s3_bucket, tmp_path, monkeypatch):
    store = S3ArtifactStore(f"s3://{s3_bucket}/root", client=s3_client)
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'registry.db'}")
    trained = train_model(config(), frame(600), None, store, output_prefix="models/v1")
    version = registry.register_version("churn", artifact_uri=trained.model_uri, artifact_sha256=trained.artifact.sha256,
                                        flavor="xgboost", task="binary_classification")
    registry.set_alias("churn", "champion", version.version, reason="test")
    rows = 400_000
    rng = np.random.default_rng(7)
    big = pd.DataFrame({"customer": np.arange(rows), **{f"f{i}": rng.normal(size=rows) for i in range(4)}})
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(big, preserve_index=False), sink, row_group_size=40_000, compression="none")
    size = store.write_bytes("incoming/big.parquet", sink.getvalue().to_pybytes()).size
    fetched: list[int] = []
    original = s3_client.get_object

    def counting_get(**kwargs):
        start, end = kwargs.get("Range", f"bytes=0-{size - 1}").removeprefix("bytes=").split("-")
        fetched.append(int(end) - int(start) + 1)
        return original(**kwargs)

    heads: list[str] = []
    original_head = s3_client.head_object

    def counting_head(**kwargs):
        heads.append(kwargs["Key"])
        return original_head(**kwargs)

    monkeypatch.setattr(s3_client, "get_object", counting_get)
    monkeypatch.setattr(s3_client, "head_object", counting_head)
    plan = plan_batch(config(chunk_rows=40_000), registry, store, run_id="r-ranges")
    assert len(plan.chunks) == 10
    assert sum(fetched) < size / 10, "planning must read the footer, not the file"
    score_chunk(plan, 0, store)  # loads the model, so only chunk 4's reads are counted below
    fetched.clear()
    heads.clear()
    result = score_chunk(plan, 4, store)
    assert result.rows == 40_000
    assert sum(fetched) < size / 4, f"one chunk of ten read {sum(fetched):,} of {size:,} bytes"
    assert heads.count("root/incoming/big.parquet") == 1, "the chunk opens its input once (schema check and batches)"
    output = pq.read_table(pa.BufferReader(store.read_bytes(result.uri))).to_pandas()
    assert output["customer"].tolist() == list(range(160_000, 200_000))


def _parquet(df: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink)
    return sink.getvalue().to_pybytes()


def test_row_numbers_join_each_prediction_back_to_its_input_row(store, champion):
    """With inference.row_numbers, every output row names its file and 0-based row in it, also when a
    file's row groups are split across chunks and for csv: the join needs no id column."""
    inputs = write_input(store, parts=2, rows=1000, row_group_size=150)  # chunks of 700 cut files mid-way
    store.write_bytes("incoming/part-9.csv", frame(300, seed=9).drop(columns=["label"]).to_csv(index=False).encode())
    plan = plan_batch(config(row_numbers=True), champion, store, run_id="r-rows")
    assert any(len(c.parts) > 1 for c in plan.chunks) and any(p.first_row > 0 for c in plan.chunks for p in c.parts)
    run_all(plan, store)
    output = read_output(plan.output_prefix, store)
    assert len(output) == 2300
    model = load_model(plan.artifact_uri, store, expected_sha256=plan.artifact_sha256)
    for name, rows in (("part-0.parquet", inputs.iloc[:1000]), ("part-1.parquet", inputs.iloc[1000:]),
                       ("part-9.csv", frame(300, seed=9).drop(columns=["label"]))):
        scored = output[output["source_file"].str.endswith(f"incoming/{name}")].sort_values("source_row")
        assert scored["source_row"].tolist() == list(range(len(rows))), name
        joined = rows.reset_index(drop=True).iloc[scored["source_row"]]
        assert scored["customer"].tolist() == joined["customer"].tolist(), name
        np.testing.assert_allclose(scored["proba_1"], model.predict_proba(joined)[:, 1], rtol=1e-5)

    without = plan_batch(config(), champion, store, run_id="r-no-rows")
    run_all(without, store)
    assert not {"source_file", "source_row"} & set(read_output(without.output_prefix, store).columns)


def test_an_id_named_like_a_row_number_column_is_refused_when_they_are_written(store, champion):
    from airflow_mlops.errors import ConfigError

    clashing = config(row_numbers=True).model_copy(deep=True)
    clashing.data.ids = ["source_row"]
    write_input(store, parts=1)
    with pytest.raises(ConfigError, match="source_row"):
        plan_batch(clashing, champion, store, run_id="r-clash")


def test_the_manifest_and_the_scoring_run_carry_the_batchs_cost_once(store, champion):
    from airflow_mlops import steps

    write_input(store)
    cfg = config()
    planned = steps.plan_scoring(cfg, store, champion, pinned={"version": 1}, run_id="manual__cost",
                                 input_uri="incoming/", plan_path="runs/cost/plan.json")

    def score(chunk):
        return steps.score_planned_chunk(cfg, store, chunk=chunk.to_dict(), validation_prefix="runs/cost").to_dict()

    results = [score(chunk) for chunk in planned.chunks]
    results[0] = score(planned.chunks[0])  # a retried chunk: Airflow keeps only the last try's result
    for _ in range(2):  # and a retried commit
        committed = steps.commit_scoring(store, champion, results=results, dag_id="churn__batch_inference",
                                         run_id="manual__cost")
    manifest = store.read_json(committed.uri)
    cost = manifest["cost"]
    assert cost["rows"] == manifest["total_rows"] == 3000
    assert cost["cpu_seconds"] > 0
    assert cost["cpu_seconds"] == pytest.approx(sum(r["cost"]["cpu_seconds"] for r in results), abs=1e-3)
    assert cost["cpu_seconds_per_million_rows"] == pytest.approx(cost["cpu_seconds"] * 1e6 / 3000, rel=1e-3)
    assert cost["wall_seconds"] == pytest.approx(sum(r["cost"]["wall_seconds"] for r in results), abs=1e-3)
    assert cost["peak_memory_bytes"] == max(r["cost"]["peak_memory_bytes"] for r in results) > 10 * 2**20
    assert [p["cost"] for p in manifest["parts"]] == [r["cost"] for r in results]
    runs = champion.scoring_runs("churn")
    assert len(runs) == 1, "a retried commit updates its scoring run"
    assert (runs[0].cpu_seconds, runs[0].peak_memory_bytes) == (cost["cpu_seconds"], cost["peak_memory_bytes"])
    assert runs[0].to_dict()["cpu_seconds_per_million_rows"] == cost["cpu_seconds_per_million_rows"]
