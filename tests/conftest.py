"""Suite-wide settings: isolate every test from the machine's own Airflow and mlops homes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = ["airflow_mlops.testing.s3", "airflow_mlops.testing.postgres", "airflow_mlops.testing.redis"]

# Tests never read a user's config, credentials or endpoints.
for _name in list(os.environ):
    if _name.startswith(("AWS_", "AIRFLOW_MLOPS_")):
        del os.environ[_name]
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# Airflow reads its home when first imported: give the suite its own, never ~/airflow.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-mlops-tests-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")


@pytest.fixture(autouse=True)
def mlops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh artifact root per test, so the embedded registry and store start empty."""
    home = tmp_path / "mlops-home"
    home.mkdir()
    monkeypatch.setenv("AIRFLOW_MLOPS_HOME", str(home))
    return home
