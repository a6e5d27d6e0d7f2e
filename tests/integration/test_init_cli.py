"""`airflow-mlops init` and `airflow-mlops validate`, tried as a new user would.

Datasets the examples do not use: iris as csv with a text target, a synthetic
customer table as parquet (categorical text, an id, a datetime, a constant), and
the whole path from `init` to a promoted champion with no edits to the file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"


def customers(rows: int = 600, seed: int = 1):
    """Monthly spend and churn of made-up customers: text categories, an id, a signup date, a constant."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    region = rng.choice(["north", "south", "east", "west"], rows)
    age = rng.integers(18, 80, rows)
    usage = rng.gamma(2.0, 10.0, rows)
    spend = 20 + 15 * (plan == "plus") + 40 * (plan == "pro") + 0.8 * usage + 0.1 * age + rng.normal(0, 3, rows)
    churn_score = -1.5 + 1.2 * (plan == "basic") - 0.06 * usage + 0.8 * (region == "south") + rng.normal(0, 0.5, rows)
    return pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(rows)],
        "signup_date": pd.date_range("2023-01-01", periods=rows, freq="D"),
        "plan": plan,
        "region": region,
        "age": age,
        "usage_hours": usage,
        "country": "NL",
        "monthly_spend": spend.round(2),
        "churned": np.where(churn_score > -1.5, "yes", "no"),
    })


def init(*args: str) -> int:
    from airflow_mlops.cli import main

    return main(["init", *args])


def load(path: Path):
    from airflow_mlops.config import load_pipeline_config

    return load_pipeline_config(path)


@pytest.fixture
def iris_csv(tmp_path: Path) -> Path:
    from sklearn.datasets import load_iris

    bunch = load_iris(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["species"] = [str(bunch.target_names[i]) for i in bunch.target]
    path = tmp_path / "iris.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def customers_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "customers.parquet"
    customers().to_parquet(path, index=False)
    return path


# ----------------------------------------------------------------------------- inference


def test_init_on_iris_csv_infers_multiclass_with_numeric_features(iris_csv, tmp_path, capsys):
    out = tmp_path / "configs" / "iris.yaml"
    assert init("iris", "--data", str(iris_csv), "--target", "species", "--out", str(out)) == 0
    assert "multiclass_classification" in capsys.readouterr().out
    config = load(out)
    assert config.pipeline == "iris" and config.model.task == "multiclass_classification"
    assert config.model.flavor == "xgboost"
    assert config.data.target == "species" and config.data.ids == []
    assert config.data.features == ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    assert config.data.split.stratify is True
    expectations = {(e.expect, getattr(e, "column", None)): e for e in config.validation.expectations}
    assert expectations["in_set", "species"].values == ["setosa", "versicolor", "virginica"]
    assert ("not_null", "species") in expectations and ("between", "petal length (cm)") in expectations
    assert next(e for e in config.validation.expectations if e.expect == "row_count_between").min == 75
    assert config.evaluation.primary_metric == "accuracy"
    assert "balanced_accuracy" in config.evaluation.thresholds
    text = out.read_text()
    assert "# numeric (float64)" in text and "airflow-mlops validate" in text


def test_init_on_a_parquet_table_handles_categoricals_ids_dates_and_constants(customers_parquet, tmp_path):
    out = tmp_path / "spend.yaml"
    assert init("spend", "--data", str(customers_parquet), "--target", "monthly_spend", "--out", str(out)) == 0
    config = load(out)
    assert config.model.task == "regression"
    assert config.data.ids == ["customer_id"]
    assert config.data.features == ["plan", "region", "age", "usage_hours", "churned"]
    assert config.data.split.stratify is False
    assert config.evaluation.primary_metric == "rmse" and "r2" in config.evaluation.thresholds
    text = out.read_text()
    assert "- plan                        # categorical, 3 values (object)" in text
    assert "- age                         # numeric (int64)" in text
    assert "signup_date (datetime64[ns]): datetime" in text and "country (object): constant" in text
    kinds = {(e.expect, getattr(e, "column", None)) for e in config.validation.expectations}
    assert ("unique", "customer_id") in kinds and ("in_set", "plan") in kinds
    assert not any(column in ("signup_date", "country") for _, column in kinds)
    present = next(e for e in config.validation.expectations if e.expect == "columns_present")
    assert "signup_date" not in present.columns and "customer_id" in present.columns


def test_init_proposes_ids_for_monitoring_or_says_none_exist(iris_csv, tmp_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    rows = 300
    orders = pd.DataFrame({
        "order_key": rng.permutation(rows) * 7 + 1000,  # unique integers, not a running number: an id by its name
        "account": rng.choice(10**9, rows, replace=False),  # unique integers, no id-like name: a candidate
        "store_id": rng.integers(0, 400, rows),  # id-like name, repeated: an id, but not one that names a row
        "amount": rng.gamma(2.0, 10.0, rows),
        "returned": rng.choice(["yes", "no"], rows),
    })
    orders.to_parquet(tmp_path / "orders.parquet", index=False)
    out = tmp_path / "orders.yaml"
    assert init("orders", "--data", str(tmp_path / "orders.parquet"), "--target", "returned", "--out", str(out)) == 0
    config = load(out)
    assert config.data.ids == ["order_key", "store_id"]
    assert "account" in config.data.features, "a unique integer may be a measurement: proposed, not moved"
    text = out.read_text()
    assert "# account could be an id (a different integer in every row)" in text
    assert "store_id: id-like name with mostly distinct values; not unique here" in text
    assert "No column looks like an id" not in text

    iris = tmp_path / "iris.yaml"
    assert init("iris", "--data", str(iris_csv), "--target", "species", "--out", str(iris)) == 0
    text = iris.read_text()
    assert "# No column looks like an id" in text and "joins labels to predictions on data.ids" in text
    assert load(iris).data.ids == []


def test_task_is_inferred_from_the_target_and_task_overrides_it(tmp_path):
    import pandas as pd

    from airflow_mlops.cli.scaffold import infer_task

    assert infer_task(pd.Series(["yes", "no", "yes"], name="t"))[0] == "binary_classification"
    assert infer_task(pd.Series([0.0, 1.0, None, 1.0], name="t"))[0] == "binary_classification"
    assert infer_task(pd.Series([1, 2, 3, 4, 5] * 20, name="t"))[0] == "multiclass_classification"
    assert infer_task(pd.Series([1, 2, 3, 4, 5] * 20, name="t"), "regression")[0] == "regression"
    assert infer_task(pd.Series([0.5, 1.25, 3.0], name="t"))[0] == "regression"
    assert infer_task(pd.Series(range(500), name="t"))[0] == "regression"

    frame = customers()
    path = tmp_path / "c.parquet"
    frame.to_parquet(path)
    out = tmp_path / "churn.yaml"
    assert init("churn", "--data", str(path), "--target", "churned", "--out", str(out)) == 0
    config = load(out)
    assert config.model.task == "binary_classification" and "monthly_spend" in config.data.features
    out2 = tmp_path / "age.yaml"
    assert init("age", "--data", str(path), "--target", "age", "--task", "multiclass", "--flavor", "sklearn",
                "--out", str(out2)) == 0
    config = load(out2)
    assert config.model.task == "multiclass_classification" and config.model.flavor == "sklearn"
    assert config.model.estimator == "sklearn.ensemble.HistGradientBoostingClassifier"


def test_big_data_is_profiled_from_a_sample_and_relative_paths_read_the_artifact_root(mlops_home, tmp_path, capsys):
    from airflow_mlops.data import write_table
    from airflow_mlops.storage import open_store

    frame = customers(rows=3000)
    store = open_store()
    write_table(frame.iloc[:1500], "data/customers/part-0.parquet", store)
    write_table(frame.iloc[1500:], "data/customers/part-1.parquet", store)
    out = tmp_path / "c.yaml"
    code = init("customers", "--data", "data/customers/", "--target", "churned", "--out", str(out), "--sample-rows", "1000")
    assert code == 0, capsys.readouterr().err
    config = load(out)
    assert config.data.train == "data/customers/"
    assert next(e for e in config.validation.expectations if e.expect == "row_count_between").min == 1500
    assert "a random sample of 3000 rows" in out.read_text()
    # a sample cannot prove uniqueness, and sampled bounds leave room for the rows not seen
    assert not any(e.expect == "unique" for e in config.validation.expectations)
    assert next(e for e in config.validation.expectations if e.expect == "between").mostly == 0.999


# -------------------------------------------------------------------------------- errors


def test_clear_errors_for_what_init_cannot_do(customers_parquet, tmp_path, capsys):
    data = str(customers_parquet)
    out = tmp_path / "x.yaml"

    assert init("x", "--data", data, "--target", "monthly_spnd", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "'monthly_spnd' is not a column" in err and "'plan', 'region'" in err and "did you mean 'monthly_spend'" in err

    assert init("x", "--data", data, "--target", "plan", "--task", "guess", "--out", str(out)) == 1
    assert "--task: expected one of binary_classification, multiclass_classification, regression" in capsys.readouterr().err
    assert init("x", "--data", data, "--target", "plan", "--task", "regression", "--out", str(out)) == 1
    assert "regression needs a numeric target; 'plan' is text" in capsys.readouterr().err
    assert init("x", "--data", data, "--target", "plan", "--task", "binary", "--out", str(out)) == 1
    assert "needs exactly 2 classes; 'plan' has 3" in capsys.readouterr().err
    assert init("x", "--data", data, "--target", "country", "--out", str(out)) == 1
    assert "holds one value ('NL') in every row" in capsys.readouterr().err
    assert init("My Model", "--data", data, "--target", "plan", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "pipeline name 'My Model' is not valid" in err and "(e.g. 'my_model')" in err
    assert init("x", "--data", str(tmp_path / "missing.parquet"), "--target", "plan", "--out", str(out)) == 1
    assert "missing.parquet: no such file or folder" in capsys.readouterr().err
    assert not out.exists()

    assert init("x", "--data", data, "--target", "plan", "--out", str(out)) == 0
    before = out.read_text()
    assert init("x", "--data", data, "--target", "region", "--out", str(out)) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == before
    assert init("x", "--data", data, "--target", "region", "--out", str(out), "--force") == 0
    assert load(out).data.target == "region"
    assert init("x", "--data", data, "--target", "plan", "--out", str(tmp_path / "other.yaml")) == 1
    assert "pipeline 'x' is already defined in" in capsys.readouterr().err


def test_an_all_null_target_is_refused(tmp_path, capsys):
    frame = customers(rows=50)
    frame["label"] = None
    frame["label"] = frame["label"].astype("float64")
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)
    assert init("x", "--data", str(path), "--target", "label", "--out", str(tmp_path / "x.yaml")) == 1
    assert "has no values (every row is null)" in capsys.readouterr().err


def test_a_bad_task_on_the_command_line_is_an_error_exit():
    from airflow_mlops.cli.scaffold import normalize_task
    from airflow_mlops.errors import ConfigError

    with pytest.raises(ConfigError, match="expected one of"):
        normalize_task("clustering")
    with pytest.raises(SystemExit) as exc:
        init("x", "--data", "d.csv", "--target", "t", "--flavor", "lightgbm")
    assert exc.value.code == 2


# ------------------------------------------------------------------------------ validate


def test_validate_a_good_and_a_broken_file(iris_csv, tmp_path, capsys, monkeypatch):
    out = tmp_path / "configs" / "iris.yaml"
    assert init("iris", "--data", str(iris_csv), "--target", "species", "--out", str(out)) == 0
    capsys.readouterr()
    from airflow_mlops.cli import main

    assert main(["validate", str(out)]) == 0
    assert "ok (pipeline iris, xgboost multiclass_classification)" in capsys.readouterr().out

    broken = tmp_path / "configs" / "broken.yaml"
    text = out.read_text().replace("pipeline: iris", "pipeline: broken").replace("flavor: xgboost", "flavor: xgb")
    broken.write_text(text.replace("{expect: not_null, column: species}", "{expect: not_nul, column: species}"))
    assert main(["validate", str(broken)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "broken.yaml: model.flavor: expected one of sklearn, xgboost, torch, got 'xgb'" in err
    assert any(line.startswith("broken.yaml: validation.expectations[") and "got {'expect': 'not_nul'" in line for line in err)

    # A folder is checked as the DAG templates load it, with the same lines as the import error.
    from airflow_mlops.dag_factory import raise_for_broken_pipeline_files

    assert main(["validate", str(tmp_path / "configs")]) == 1
    captured = capsys.readouterr()
    assert "iris.yaml: ok" in captured.out
    from airflow_mlops.errors import ConfigError

    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIGS", str(tmp_path / "configs"))
    with pytest.raises(ConfigError) as raised:
        raise_for_broken_pipeline_files(str(DAGS / "pipeline_files.py"))
    assert str(raised.value).splitlines() == captured.err.splitlines()
    assert main(["config", "validate", str(broken)]) == 1


def test_validate_warns_when_monitoring_has_no_ids_to_join_on(iris_csv, tmp_path, capsys):
    from airflow_mlops.cli import main

    out = tmp_path / "iris.yaml"
    assert init("iris", "--data", str(iris_csv), "--target", "species", "--out", str(out)) == 0
    assert main(["validate", str(out)]) == 0
    assert "warning" not in capsys.readouterr().out, "no monitoring: section, nothing to join"

    out.write_text(out.read_text() + "monitoring: {labels: labels/iris/}\n")
    assert main(["validate", str(out)]) == 0, "a warning: the DAGs still load"
    captured = capsys.readouterr()
    assert f"{out}: warning: monitoring: joins labels to batch predictions on data.ids, and data.ids is empty" in captured.out
    assert captured.err == ""

    with_ids = tmp_path / "with_ids.yaml"
    with_ids.write_text(out.read_text().replace("pipeline: iris", "pipeline: with_ids")
                        .replace("iris_score/", "with_ids_score/")
                        .replace("  ids: []", "  ids: [petal width (cm)]")
                        .replace("    - petal width (cm)", ""))
    assert main(["validate", str(with_ids)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_validate_as_a_command(tmp_path):
    missing = tmp_path / "nope.yaml"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow-mlops"), "validate", str(missing)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"{missing}: pipeline file not found"


# ------------------------------------------------------------------------- the new user


@pytest.fixture
def airflow_db() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_from_init_to_a_promoted_champion_without_editing_the_file(airflow_db, mlops_home, tmp_path, monkeypatch, capsys):
    from airflow_mlops.data import write_table
    from airflow_mlops.storage import open_store

    configs = tmp_path / "dags" / "configs"
    configs.mkdir(parents=True)
    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIGS", str(configs))
    write_table(customers(), "data/churn/train.parquet", open_store())

    assert init("churn", "--data", "data/churn/train.parquet", "--target", "churned") == 0, capsys.readouterr().err
    written = configs / "churn.yaml"
    assert written.exists()
    from airflow_mlops.cli import main

    assert main(["validate", str(written)]) == 0

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    assert {"churn__retrain", "churn__batch_inference", "churn__drift", "churn__rollback"} <= set(bag.dag_ids)
    run = bag.dags["churn__retrain"].test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states

    from airflow_mlops.registry import ModelRegistry

    registry = ModelRegistry()
    champion = registry.resolve("churn", "champion")
    assert champion.version == 1 and champion.task == "binary_classification"
    evaluation = registry.evaluations("churn", 1)[-1]
    assert evaluation.passed and evaluation.metrics["roc_auc"] >= 0.6, evaluation.metrics
    assert "plan" in str(evaluation.slice_metrics)  # the suggested slice is reported
    assert registry.history("churn", "champion")[-1].run_id == run.run_id


def test_pipelines_whose_data_share_a_folder_get_their_own_scoring_inputs(iris_csv, tmp_path, capsys):
    """Two CSVs in one folder: each pipeline scores its own folder, and validate warns when a hand edit
    points two pipelines at one scoring input (each would score the other's files)."""
    import yaml

    from airflow_mlops.cli import main

    configs = tmp_path / "configs"
    for name in ("iris", "flowers"):
        assert init(name, "--data", str(iris_csv), "--target", "species", "--out", str(configs / f"{name}.yaml")) == 0
    inputs = {name: yaml.safe_load((configs / f"{name}.yaml").read_text())["inference"]["input"] for name in ("iris", "flowers")}
    assert inputs == {"iris": f"{iris_csv.parent}/iris_score/", "flowers": f"{iris_csv.parent}/flowers_score/"}
    capsys.readouterr()
    assert main(["validate", str(configs / "iris.yaml")]) == 0
    assert "warning" not in capsys.readouterr().out

    flowers = configs / "flowers.yaml"
    flowers.write_text(flowers.read_text().replace("flowers_score/", "iris_score/"))
    assert main(["validate", str(configs / "iris.yaml")]) == 0, "a warning: sharing can be meant"
    out = capsys.readouterr().out
    assert f"iris.yaml: warning: inference.input {iris_csv.parent}/iris_score/ is also the scoring input of flowers" in out
    assert main(["validate", str(configs)]) == 0
    out = capsys.readouterr().out
    assert "flowers.yaml: warning" in out and "scoring input of iris" in out


def test_numeric_columns_with_few_values_get_ranges_not_value_sets(tmp_path):
    """A year or a count with five values today has a sixth next year: only small categorical columns (with
    `mostly: 0.99`) and a classifier's target get `in_set`; missing text is missing, not `not_null`."""
    import numpy as np
    import pandas as pd
    import yaml

    rng = np.random.default_rng(3)
    rows = 400
    data = pd.DataFrame({
        "year": rng.choice([2019, 2020, 2021, 2022, 2023], rows),
        "visits": rng.integers(0, 6, rows),
        "plan": rng.choice(["basic", "pro", ""], rows),  # '' is a missing plan in a CSV
        "spend": rng.normal(50, 10, rows),
        "label": rng.choice(["stay", "leave"], rows),
    })
    csv = tmp_path / "data" / "churn.csv"
    csv.parent.mkdir()
    data.to_csv(csv, index=False)
    out = tmp_path / "churn.yaml"
    assert init("churn", "--data", str(csv), "--target", "label", "--out", str(out)) == 0
    expectations = yaml.safe_load(out.read_text())["validation"]["expectations"]
    sets = {e["column"]: e for e in expectations if e["expect"] == "in_set"}
    assert set(sets) == {"plan", "label"}, sets
    assert sets["plan"]["mostly"] == 0.99 and "mostly" not in sets["label"]
    assert sorted(sets["plan"]["values"]) == ["basic", "pro"], "an empty cell is missing, not a category"
    ranged = {e["column"] for e in expectations if e["expect"] == "between"}
    assert {"year", "visits", "spend"} <= ranged
    not_null = {e["column"] for e in expectations if e["expect"] == "not_null"}
    assert "plan" not in not_null and {"year", "label"} <= not_null


def test_rows_without_a_target_are_left_out_by_the_file_init_writes(tmp_path, caplog):
    """init sees rows with no label and writes `data.unlabelled_rows: drop`: the file trains as written."""
    import logging

    import numpy as np
    import pandas as pd

    from airflow_mlops.config import load_pipeline_config
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.steps import train_and_register
    from airflow_mlops.storage import open_store

    rng = np.random.default_rng(5)
    rows = 300
    x = rng.normal(size=(rows, 3))
    price = 10 + 3 * x[:, 0] - 2 * x[:, 1] + rng.normal(0, 0.3, rows)
    price[rng.choice(rows, 25, replace=False)] = np.nan  # not yet sold: no price
    csv = tmp_path / "data" / "houses.csv"
    csv.parent.mkdir()
    pd.DataFrame({"size": x[:, 0], "age": x[:, 1], "rooms": x[:, 2], "price": price}).to_csv(csv, index=False)
    out = tmp_path / "houses.yaml"
    assert init("houses", "--data", str(csv), "--target", "price", "--out", str(out)) == 0
    config = load_pipeline_config(out)
    assert config.data.unlabelled_rows == "drop"
    assert not any(e.expect == "not_null" and e.column == "price" for e in config.validation.expectations)

    store = open_store(str(tmp_path / "root"))
    with caplog.at_level(logging.WARNING, logger="airflow_mlops.steps"):
        outcome = train_and_register(config, store, ModelRegistry(f"sqlite:///{tmp_path / 'registry.db'}"),
                                     data_uri=str(csv), prefix="runs/r1/train", lineage={"dag_id": "houses__retrain", "run_id": "r1", "task_id": "train", "actor": "test"})
    assert "left out 25 of 300 rows with no 'price'" in caplog.text
    assert sum(d["rows"] for d in outcome.datasets.values()) == 275

    # The default stays strict: without the setting the same data is refused, naming the count.
    from airflow_mlops.errors import DataError

    strict = config.model_copy(update={"data": config.data.model_copy(update={"unlabelled_rows": "fail"})})
    with pytest.raises(DataError, match="has 25 missing values"):
        train_and_register(strict, store, ModelRegistry(f"sqlite:///{tmp_path / 'registry2.db'}"),
                           data_uri=str(csv), prefix="runs/r2/train", lineage={"dag_id": "houses__retrain", "run_id": "r2", "task_id": "train", "actor": "test"})
