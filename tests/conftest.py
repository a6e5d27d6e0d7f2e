"""Suite-wide settings: isolate every test from the machine's own Airflow and mlops homes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The S3 and PostgreSQL fixtures come from the package's pytest plugin (entry point `airflow_mlops`);
# the Redis one from tests/e2e/conftest.py.

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


# A test's tier follows from what it uses, so a marker cannot drift from the test body:
# `make test-fast` deselects every tier below.
TIER_FIXTURES = {
    "postgres": {"postgres_server"},
    "s3": {"s3_server"},
    "redis": {"redis_url"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in TIER_FIXTURES.items():
            if used & fixtures:
                item.add_marker(marker)
        if item.get_closest_marker("browser") is not None or REPO / "tests" / "e2e" in item.path.parents:
            item.add_marker("slow")


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """Where a browser test saves its screenshots: $MLOPS_SCREENSHOTS, else a temporary folder (never the
    repository); the path is printed so a failing run can be looked at."""
    root = os.environ.get("MLOPS_SCREENSHOTS")
    folder = Path(root) / request.node.name if root else Path(tempfile.mkdtemp(prefix="mlops-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder
