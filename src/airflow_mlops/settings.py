"""Names every layer shares, in one place: environment variables, the configs-folder rule, DAG ids.

Nothing here imports Airflow or a heavy library, so DAG files, the ML modules and the UI all read
the same names.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "AIRFLOW_MLOPS_HOME"  # the artifact root (a folder or s3://bucket/prefix)
CONFIGS_ENV = "AIRFLOW_MLOPS_CONFIGS"  # the folder of pipeline files
CONFIGS_VARIABLE_ENV = "AIRFLOW_VAR_MLOPS_CONFIGS"  # the same as the Airflow Variable `mlops_configs`
THREADS_ENV = "AIRFLOW_MLOPS_THREADS"  # threads a task may use (default: the machine's cores)
CODE_VERSION_ENV = "AIRFLOW_MLOPS_CODE_VERSION"  # recorded on each version (default: the git commit)
ALIAS_POLL_ENV = "AIRFLOW_MLOPS_ALIAS_POLL_SECONDS"  # how often the triggerer reads the alias history

CONFIGS_FOLDER_NAME = "configs"


def configs_folder(dags_folder: str | os.PathLike[str]) -> Path:
    """Where pipeline files are read from: `$AIRFLOW_MLOPS_CONFIGS` (or the Airflow Variable
    `mlops_configs`), else `configs/` in `dags_folder` (the templates pass their own folder, the UI
    Airflow's DAGs folder, `init` the project's `dags/`)."""
    folder = os.environ.get(CONFIGS_ENV) or os.environ.get(CONFIGS_VARIABLE_ENV)
    return Path(folder) if folder else Path(dags_folder) / CONFIGS_FOLDER_NAME


def dag_id(pipeline: str, kind: str) -> str:
    """`<pipeline>__<kind>`: retrain, rollback, announce, batch_inference, drift, monitor."""
    return f"{pipeline}__{kind}"
