"""Suite-wide settings: isolate every test from the machine's own Airflow and mlops homes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["airflow_mlops.testing.s3", "airflow_mlops.testing.postgres"]

# Tests never read a user's config, credentials or endpoints.
for _name in list(os.environ):
    if _name.startswith(("AWS_", "AIRFLOW_MLOPS_")):
        del os.environ[_name]
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def mlops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh artifact root per test, so the embedded registry and store start empty."""
    home = tmp_path / "mlops-home"
    home.mkdir()
    monkeypatch.setenv("AIRFLOW_MLOPS_HOME", str(home))
    return home
