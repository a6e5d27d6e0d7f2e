"""From three CSVs in one folder to promoted champions and scored batches, with no hand edits.

The datasets carry the traits that tripped a new user (issue 20): text categories with empty cells
in a CSV, string class labels, a target missing on some rows, a free-text name column, numbers with
few distinct values (years, counts), a date column, an imbalanced multiclass target. They share a data
folder, so each pipeline must score its own input. Each goes `init` -> `validate` -> the retrain DAG
(a real Airflow `dag.test()`) -> the batch-inference DAG on new rows written as CSV with empty cells.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"

pytestmark = pytest.mark.slow


def penguins(rows: int, rng) -> tuple:
    """Multiclass with string labels; island and sex have empty cells; year has three values."""
    import numpy as np
    import pandas as pd

    species = rng.choice(["Adelie", "Chinstrap", "Gentoo"], rows)
    bill = np.select([species == "Adelie", species == "Chinstrap"], [38.8, 48.8], 47.5) + rng.normal(0, 2, rows)
    flipper = np.select([species == "Adelie", species == "Chinstrap"], [190, 196], 217) + rng.normal(0, 5, rows)
    island = np.where(species == "Gentoo", "Biscoe", rng.choice(["Dream", "Torgersen", "Biscoe"], rows))
    sex = rng.choice(["male", "female"], rows)
    island[rng.choice(rows, rows // 20, replace=False)] = ""
    sex[rng.choice(rows, rows // 15, replace=False)] = ""
    frame = pd.DataFrame({"island": island, "bill_length_mm": bill.round(1), "flipper_length_mm": flipper.round(),
                          "sex": sex, "year": rng.choice([2007, 2008, 2009], rows), "species": species})
    return frame, "species"


def cars(rows: int, rng) -> tuple:
    """Regression; the target is missing on some rows; a free-text name; cylinders has five values."""
    import numpy as np
    import pandas as pd

    cylinders = rng.choice([3, 4, 5, 6, 8], rows)
    weight = 1500 + 300 * cylinders + rng.normal(0, 200, rows)
    horsepower = 20 * cylinders + rng.normal(0, 10, rows)
    mpg = 60 - 0.008 * weight - 0.05 * horsepower + rng.normal(0, 1.5, rows)
    mpg[rng.choice(rows, rows // 12, replace=False)] = np.nan
    makes = ["ford", "chevrolet", "toyota", "honda", "datsun", "volkswagen", "plymouth", "amc"]
    name = [f"{rng.choice(makes)} model {i} {rng.choice(['sedan', 'wagon', 'coupe'])}" for i in range(rows)]
    frame = pd.DataFrame({"name": name, "cylinders": cylinders, "weight": weight.round(),
                          "horsepower": horsepower.round(1), "model_year": rng.choice(range(70, 83), rows),
                          "mpg": mpg.round(1)})
    return frame, "mpg"


def tickets(rows: int, rng) -> tuple:
    """Imbalanced multiclass (about 80/15/5) with a date column and a channel with empty cells."""
    import numpy as np
    import pandas as pd

    wait = rng.gamma(2.0, 3.0, rows)
    replies = rng.integers(0, 8, rows)
    score = 0.35 * wait + 0.6 * replies + rng.normal(0, 1, rows)
    priority = np.where(score > np.quantile(score, 0.95), "urgent",
                        np.where(score > np.quantile(score, 0.80), "high", "normal"))
    channel = rng.choice(["email", "phone", "chat"], rows)
    channel[rng.choice(rows, rows // 25, replace=False)] = ""
    opened = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365, rows), unit="D")
    frame = pd.DataFrame({"opened_on": opened.strftime("%Y-%m-%d"), "channel": channel, "wait_hours": wait.round(2),
                          "replies": replies, "priority": priority})
    return frame, "priority"


DATASETS = {"penguins": penguins, "cars": cars, "tickets": tickets}


@pytest.fixture
def airflow_db() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_three_csvs_in_one_folder_reach_a_champion_and_score_new_rows(airflow_db, mlops_home, tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd
    import yaml
    from airflow.dag_processing.dagbag import DagBag

    from airflow_mlops.cli import main
    from airflow_mlops.registry import ModelRegistry

    configs = tmp_path / "dags" / "configs"
    configs.mkdir(parents=True)
    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIGS", str(configs))
    shared = tmp_path / "data"
    shared.mkdir()
    rng = np.random.default_rng(20)
    frames = {}
    for name, make in DATASETS.items():
        frame, target = make(500, rng)
        frame.to_csv(shared / f"{name}.csv", index=False)
        frames[name] = (frame, target)
        assert main(["init", name, "--data", str(shared / f"{name}.csv"), "--target", target]) == 0

    files = {name: yaml.safe_load((configs / f"{name}.yaml").read_text()) for name in DATASETS}
    inputs = {name: file["inference"]["input"] for name, file in files.items()}
    assert len(set(inputs.values())) == 3, f"each pipeline scores its own folder: {inputs}"
    assert files["cars"]["data"]["unlabelled_rows"] == "drop"
    assert "opened_on" not in files["tickets"]["data"].get("features", []), "a date is not a feature as it is"
    assert not files["penguins"]["data"]["ids"] and not files["tickets"]["data"]["ids"], "nothing there names a row"
    for name, file in files.items():
        for expectation in file["validation"]["expectations"]:
            if expectation["expect"] == "in_set" and expectation["column"] != frames[name][1]:
                assert expectation.get("mostly") == 0.99, (name, expectation)
                assert "" not in expectation["values"], "an empty CSV cell is missing, not a category"
    assert main(["validate", str(configs)]) == 0

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    registry = ModelRegistry()
    for name, (frame, target) in frames.items():
        run = bag.dags[f"{name}__retrain"].test()
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert run.state == "success", (name, states)
        champion = registry.resolve(name, "champion")
        assert registry.evaluations(name, champion.version)[-1].passed

        # New rows arrive as a CSV without the target, empty cells and all, in the pipeline's own folder.
        score_folder = Path(inputs[name])
        score_folder.mkdir(parents=True, exist_ok=True)
        new_rows = frame.drop(columns=[target]).sample(120, random_state=1)
        new_rows.to_csv(score_folder / "batch-1.csv", index=False)

        run = bag.dags[f"{name}__batch_inference"].test()
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert run.state == "success", (name, states)
        scored = registry.scoring_runs(name)
        assert scored and scored[0].rows == 120 and scored[0].version == champion.version, scored
        output = pd.read_parquet(scored[0].output_prefix)
        assert len(output) == 120 and output["model_version"].eq(champion.version).all()
        if champion.task == "regression":
            assert output["prediction"].notna().all()
        else:
            assert set(output["prediction"]) <= set(frame[target].dropna()), "predictions are the data's labels"
        if not files[name]["data"]["ids"]:
            # No id column: init asked for row numbers, so each prediction still joins back to its input row.
            assert files[name]["inference"]["row_numbers"] is True
            assert sorted(output["source_row"]) == list(range(120))
            assert output["source_file"].str.endswith("batch-1.csv").all()
