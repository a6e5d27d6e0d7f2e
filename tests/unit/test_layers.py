"""The layers of docs/architecture.md, checked on the source: the ML modules never import Airflow or
the layers above them, so they run (and are tested) without Airflow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "airflow_mlops"
AIRFLOW_FREE = ["config", "data", "drift", "evaluation", "inference", "monitoring", "registry", "storage", "training",
                "tuning", "validation", "refs.py", "settings.py", "dotted.py", "errors.py", "steps", "governance.py",
                "cost.py"]
UPPER = ("airflow_mlops.operators", "airflow_mlops.hooks", "airflow_mlops.triggers", "airflow_mlops.ui",
         "airflow_mlops.cli", "airflow_mlops.dag_factory", "airflow_mlops.provider")


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):  # function-level imports count too
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("part", AIRFLOW_FREE)
def test_ml_modules_import_neither_airflow_nor_the_layers_above(part):
    target = PACKAGE / part
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert files, part
    for path in files:
        for name in imported_modules(path):
            assert name != "airflow" and not name.startswith("airflow."), f"{path.relative_to(PACKAGE)} imports {name}"
            assert not name.startswith(UPPER), f"{path.relative_to(PACKAGE)} imports {name} from a layer above"


def test_dag_files_copied_from_the_first_release_still_import_the_old_module_name():
    import importlib
    import sys

    sys.modules.pop("airflow_mlops.templates", None)
    with pytest.warns(DeprecationWarning, match="renamed airflow_mlops.dag_factory"):
        old = importlib.import_module("airflow_mlops.templates")
    from airflow_mlops import dag_factory

    assert old.pipelines is dag_factory.pipelines
    assert old.retraining_schedule is dag_factory.retraining_schedule
