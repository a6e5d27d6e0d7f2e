"""Datasets: parquet and csv on local and S3 stores, streaming, fingerprints, splits, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_mlops.data import (
    dataset_ref,
    fingerprint,
    fingerprint_table,
    iter_batches,
    iter_row_group_batches,
    list_parts,
    parquet_row_groups,
    read_table,
    split_dataset,
    write_table,
)
from airflow_mlops.errors import ArtifactNotFoundError, DataError
from airflow_mlops.storage import LocalArtifactStore, S3ArtifactStore


def frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "x": rng.normal(size=rows),
            "color": rng.choice(["red", "green", "blue"], size=rows),
            "label": rng.choice(["yes", "no"], size=rows, p=[0.3, 0.7]),
        }
    )


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "root")
    client = request.getfixturevalue("s3_client")
    return S3ArtifactStore(f"s3://{request.getfixturevalue('s3_bucket')}/data", client=client)


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_write_and_read_a_file(store, suffix):
    df = frame()
    ref = write_table(df, f"t/table.{suffix}", store)
    assert ref.uri == store.uri(f"t/table.{suffix}")
    pd.testing.assert_frame_equal(read_table(f"t/table.{suffix}", store), df)
    pd.testing.assert_frame_equal(read_table(f"t/table.{suffix}", store, columns=["x", "id"]), df[["x", "id"]])


def test_a_folder_of_parts_reads_as_one_dataset_ignoring_bookkeeping_files(store):
    df = frame(300)
    write_table(df.iloc[:100], "parts/part-0.parquet", store)
    write_table(df.iloc[100:250], "parts/part-1.parquet", store)
    write_table(df.iloc[250:], "parts/part-2.csv", store)
    store.write_json("parts/_manifest.json", {"parts": 3})
    store.write_bytes("parts/.hidden.parquet", b"junk")
    assert [u.rsplit("/", 1)[-1] for u in list_parts("parts", store)] == ["part-0.parquet", "part-1.parquet", "part-2.csv"]
    pd.testing.assert_frame_equal(read_table("parts/", store), df)


def test_iter_batches_streams_in_bounded_batches(tmp_path):
    store = LocalArtifactStore(tmp_path)
    df = frame(10_000)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "big.parquet", row_group_size=3000)
    sizes = [b.num_rows for b in iter_batches("big.parquet", store, batch_rows=1000)]
    assert max(sizes) <= 1000 and sum(sizes) == 10_000
    assert parquet_row_groups("big.parquet", store) == [3000, 3000, 3000, 1000]
    rows = sum(b.num_rows for b in iter_row_group_batches("big.parquet", store, [1, 3], batch_rows=500))
    assert rows == 4000
    first = next(iter_row_group_batches("big.parquet", store, [1], columns=["id"]))
    assert first.column("id")[0].as_py() == 3000


def test_fingerprint_is_stable_under_repartitioning_and_store(store, tmp_path):
    df = frame(1000)
    write_table(df, "one/all.parquet", store)
    for i, start in enumerate(range(0, 1000, 333)):
        write_table(df.iloc[start : start + 333], f"many/part-{i}.parquet", store)
    (tmp_path / "elsewhere").mkdir()
    local = LocalArtifactStore(tmp_path / "elsewhere")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), local.uri("rg.parquet"), row_group_size=77)
    expected = fingerprint_table(df)
    assert fingerprint("one/all.parquet", store) == expected
    assert fingerprint("many", store) == expected
    assert fingerprint("rg.parquet", local) == expected
    ref = dataset_ref("many", store)
    assert (ref.rows, ref.columns, ref.fingerprint) == (1000, ["id", "x", "color", "label"], expected)


def test_fingerprint_agrees_across_formats_with_the_same_logical_types(tmp_path):
    store = LocalArtifactStore(tmp_path)
    df = frame(100)[["id", "x", "color"]]
    write_table(df, "a.parquet", store)
    write_table(df, "a.csv", store)
    assert fingerprint("a.parquet", store) == fingerprint("a.csv", store)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=2, max_size=50),
    index=st.integers(min_value=0),
)
def test_fingerprint_changes_with_any_value_name_type_or_order(values, index):
    df = pd.DataFrame({"v": values, "w": range(len(values))})
    base = fingerprint_table(df)
    position = index % len(values)
    changed = df.copy()
    changed.loc[position, "w"] = changed.loc[position, "w"] + 1
    assert fingerprint_table(changed) != base
    assert fingerprint_table(df.rename(columns={"v": "v2"})) != base
    assert fingerprint_table(df.astype({"w": "float64"})) != base
    assert fingerprint_table(df[["w", "v"]]) != base
    if len(set(zip(values, range(len(values)), strict=True))) > 1:
        assert fingerprint_table(df.iloc[::-1].reset_index(drop=True)) != base


def test_split_is_deterministic_stratified_and_sized(tmp_path):
    store = LocalArtifactStore(tmp_path)
    df = frame(1000)
    first = split_dataset(df, target="label", validation=0.2, test=0.25, stratify=True, seed=7, out_prefix="s1", store=store)
    again = split_dataset(df, target="label", validation=0.2, test=0.25, stratify=True, seed=7, out_prefix="s2", store=store)
    assert {k: v.fingerprint for k, v in first.items()} == {k: v.fingerprint for k, v in again.items()}
    assert (first["test"].rows, first["validation"].rows, first["train"].rows) == (250, 200, 550)
    for name in ("train", "validation", "test"):
        part = read_table(first[name].uri, store)
        assert abs((part["label"] == "yes").mean() - (df["label"] == "yes").mean()) < 0.02
    ids = pd.concat([read_table(first[n].uri, store)["id"] for n in first])
    assert sorted(ids) == list(range(1000)), "every row lands in exactly one split"
    other = split_dataset(df, target="label", validation=0.2, test=0.25, stratify=True, seed=8, out_prefix="s3", store=store)
    assert other["test"].fingerprint != first["test"].fingerprint


def test_split_without_validation(tmp_path):
    store = LocalArtifactStore(tmp_path)
    refs = split_dataset(frame(100), target="x", validation=0.0, test=0.3, stratify=False, seed=1, out_prefix="s", store=store)
    assert set(refs) == {"train", "test"} and refs["test"].rows == 30


def test_split_errors_name_the_problem(tmp_path):
    store = LocalArtifactStore(tmp_path)
    df = frame(100)
    with pytest.raises(DataError, match="target column 'churn' is not in the data"):
        split_dataset(df, target="churn", validation=0.2, test=0.2, stratify=True, seed=1, out_prefix="s", store=store)
    df.loc[0, "label"] = "maybe"
    with pytest.raises(DataError, match=r"class 'maybe' \(1 row\) has fewer than 2 rows"):
        split_dataset(df, target="label", validation=0.2, test=0.2, stratify=True, seed=1, out_prefix="s", store=store)


def test_bad_input_gets_a_clear_error(tmp_path):
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(ArtifactNotFoundError, match="no such file or folder"):
        read_table("missing.parquet", store)
    (tmp_path / "fake.parquet").write_text("id,x\n1,2\n")
    with pytest.raises(DataError, match="fake.parquet is not a parquet file"):
        read_table("fake.parquet", store)
    (tmp_path / "ragged.csv").write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(DataError, match=r"ragged.csv: malformed csv: .*Expected 3 columns, got 2"):
        read_table("ragged.csv", store)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_table("empty.csv", store)
    write_table(frame(0), "nothing.parquet", store)
    with pytest.raises(DataError, match=r"the dataset is empty \(0 rows\)"):
        read_table("nothing.parquet", store)
    write_table(frame(5), "ok.parquet", store)
    with pytest.raises(DataError, match=r"missing column 'target'; the data has 'id', 'x', 'color', 'label'"):
        read_table("ok.parquet", store, columns=["x", "target"])
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="no parquet or csv files"):
        read_table("folder", store)
    (tmp_path / "table.xlsx").write_text("?")
    with pytest.raises(DataError, match="expected a .parquet, .pq or .csv"):
        read_table("table.xlsx", store)


def test_infinity_checks_count_only_infinities_not_missing_values_or_huge_sums():
    from airflow_mlops.data.checks import require_finite_features

    huge = np.full(4, 3e38, dtype=np.float32)  # sums past float32's range, yet every value is finite
    require_finite_features([("huge", huge), ("gaps", np.array([1.0, np.nan])), ("ints", np.arange(3))], "the data")
    with pytest.raises(DataError, match=r"in 'a' \(2 values\), 'b' \(1 value\);"):
        require_finite_features([("a", np.array([np.inf, -np.inf, np.nan])), ("b", np.array([1, -np.inf], dtype=np.float32))], "the data")


def test_duplicate_column_names_are_named_whatever_their_type(tmp_path):
    from airflow_mlops.data.checks import duplicate_columns

    assert duplicate_columns([1, "1", "a", "b", "a", "a"]) == {"1": 2, "a": 3}
    with pytest.raises(DataError, match=r"the data has duplicate column names: 'x' \(2 times\)"):
        fingerprint_table(pd.DataFrame([[1, 2]], columns=["x", "x"]))


def test_missing_text_is_missing_in_csv_as_in_parquet(tmp_path):
    """An empty text cell in a CSV is a null, as in parquet: not a category '' that only CSV data has."""
    store = LocalArtifactStore(tmp_path)
    (tmp_path / "rows.csv").write_text('plan,region,usage\nbasic,,1.5\n,north,\npro,"",2.0\n')
    frame = pd.DataFrame({"plan": ["basic", None, "pro"], "region": [None, "north", None], "usage": [1.5, None, 2.0]})
    write_table(frame, "rows.parquet", store)
    from_csv, from_parquet = read_table("rows.csv", store), read_table("rows.parquet", store)
    assert from_csv["plan"].isna().tolist() == from_parquet["plan"].isna().tolist() == [False, True, False]
    assert from_csv["region"].isna().tolist() == from_parquet["region"].isna().tolist() == [True, False, True]
    pd.testing.assert_frame_equal(from_csv, from_parquet)
