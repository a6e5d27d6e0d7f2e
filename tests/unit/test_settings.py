"""Names shared across layers come from one place, so the templates, the UI and `init` cannot disagree."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from airflow_mlops import settings, templates
from airflow_mlops.cli import scaffold
from airflow_mlops.config.schema import Flavor, Task
from airflow_mlops.training import base


def test_every_flavor_the_pipeline_file_accepts_has_a_trainer_and_init_offers_it():
    assert set(get_args(Flavor)) == set(base.FLAVORS) == set(scaffold.FLAVORS)
    assert set(get_args(Task)) == set(scaffold.TASKS)


def test_templates_ui_and_init_read_the_same_configs_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.CONFIGS_ENV, raising=False)
    monkeypatch.delenv(settings.CONFIGS_VARIABLE_ENV, raising=False)
    # Without the variable: configs/ beside the templates, in Airflow's DAGs folder, in the project's dags/.
    assert templates.configs_folder(str(tmp_path / "dags" / "retraining.py")) == tmp_path / "dags" / "configs"
    assert scaffold.default_output("churn") == Path("dags") / "configs" / "churn.yaml"

    for variable in (settings.CONFIGS_VARIABLE_ENV, settings.CONFIGS_ENV):  # the Airflow Variable, then ours over it
        monkeypatch.setenv(variable, str(tmp_path / variable))
        expected = tmp_path / variable
        assert templates.configs_folder(str(tmp_path / "dags" / "retraining.py")) == expected
        assert settings.configs_folder("/opt/airflow/dags") == expected  # what the UI passes
        assert scaffold.default_output("churn") == expected / "churn.yaml"

