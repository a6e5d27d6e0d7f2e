"""What the DAG templates in dags/ share: pipeline files, schedules, Assets, Params.

Everything here runs at DAG-parse time, so it reads only the pipeline files:
no registry, no artifact store, no network, no heavy ML imports.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops import settings
from airflow_mlops.config import LoadedPipelines, PipelineConfig, load_pipeline_configs
from airflow_mlops.config.schema import WINDOW_PATTERN

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetWatcher, Param

log = logging.getLogger(__name__)

DEFAULT_ALIAS_POLL_SECONDS = 5.0
CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}


def configs_folder(dag_file: str) -> Path:
    """The pipeline files of a template: the shared rule, with configs/ beside the template as the default."""
    return settings.configs_folder(Path(dag_file).resolve().parent)


def load_pipelines(dag_file: str) -> LoadedPipelines:
    """Every valid pipeline file; a broken one is logged here and raised by dags/pipeline_files.py."""
    loaded = load_pipeline_configs(configs_folder(dag_file), strict=False)
    for path, error in loaded.errors.items():
        log.error("skipping %s: %s", path.name, error)
    return loaded


def pipelines(dag_file: str) -> list[PipelineConfig]:
    return list(load_pipelines(dag_file).configs.values())


def dag_id(config: PipelineConfig, kind: str) -> str:
    return settings.dag_id(config.pipeline, kind)


def _absolute_uri(path: str) -> str:
    if "://" in path:
        return path
    if os.path.isabs(path):
        return f"file://{path}"
    from airflow_mlops.storage import artifact_root

    root = artifact_root()
    joined = f"{root.rstrip('/')}/{path.lstrip('/')}"
    return joined if "://" in joined else f"file://{joined}"


def training_data_asset(config: PipelineConfig) -> Asset:
    """The training data as an Asset: an ingestion DAG with this outlet starts retraining."""
    from airflow.sdk import Asset

    return Asset(name=f"{config.pipeline}.training_data", uri=_absolute_uri(config.data.train))


def _alias_watcher(config: PipelineConfig, asset_name: str, aliases: list[str] | None) -> AssetWatcher:
    """Follows the registry's alias history from Airflow's triggerer: one Asset event per move."""
    from airflow.sdk import AssetWatcher

    from airflow_mlops.triggers.alias_history import AliasMovedTrigger

    trigger = AliasMovedTrigger(
        model=config.pipeline, stream=asset_name, aliases=aliases,
        poll_interval=float(os.environ.get(settings.ALIAS_POLL_ENV) or DEFAULT_ALIAS_POLL_SECONDS),
    )
    return AssetWatcher(name=f"{asset_name}.history", trigger=trigger)


def champion_asset(config: PipelineConfig) -> Asset:
    """Updated once per move of the promotion alias, wherever it moved (DAG, UI, API, CLI, Python)."""
    from airflow.sdk import Asset

    alias = config.promotion.alias
    name = f"{config.pipeline}.{alias}"
    return Asset(name=name, uri=f"x-mlops://{config.pipeline}/{alias}",
                 watchers=[_alias_watcher(config, name, [alias])])


def alias_moves_asset(config: PipelineConfig) -> Asset:
    """Updated once per move of any of the model's aliases: what `<pipeline>__announce` announces."""
    from airflow.sdk import Asset

    name = f"{config.pipeline}.aliases"
    return Asset(name=name, uri=f"x-mlops://{config.pipeline}/aliases", watchers=[_alias_watcher(config, name, None)])


def labels_asset(config: PipelineConfig) -> Asset | None:
    """The monitoring labels' location as an Asset: a labelling DAG with this outlet starts the monitor."""
    from airflow.sdk import Asset

    if config.monitoring is None or not config.monitoring.labels:
        return None
    return Asset(name=f"{config.pipeline}.labels", uri=_absolute_uri(config.monitoring.labels))


def _cron_timetable(cron: str) -> Any:
    """A cron schedule whose first run is the next cron time after the DAG is first unpaused.

    With a start date in the past and `catchup=False`, Airflow runs the most recent past cron time the
    moment a DAG is unpaused: a retraining (and promotion) nobody asked for. The templates give no start
    date, and `run_immediately=timedelta(0)` makes the first automated run wait for the next cron time.
    """
    from airflow.sdk import CronTriggerTimetable

    return CronTriggerTimetable(CRON_PRESETS.get(cron, cron), timezone="UTC", run_immediately=timedelta(0))


def _schedule(cron: str | None, asset: Asset | None) -> Any:
    from airflow.sdk import AssetOrTimeSchedule

    if cron in ("@once", "@continuous"):
        return [asset] if asset is not None else cron
    if asset is None:
        return _cron_timetable(cron) if cron else None
    if cron is None:
        return [asset]
    return AssetOrTimeSchedule(timetable=_cron_timetable(cron), assets=asset)


def retraining_schedule(config: PipelineConfig) -> Any:
    asset = training_data_asset(config) if config.retraining.on_new_data else None
    return _schedule(config.retraining.schedule, asset)


def inference_schedule(config: PipelineConfig) -> Any:
    """Without `inference.input` there is nothing to score unattended: the DAG runs only when triggered with an input."""
    if not config.inference.input:
        return None
    return _schedule(config.inference.schedule, champion_asset(config))


def drift_schedule(config: PipelineConfig) -> Any:
    """Without `drift.current` there is nothing to check unattended: the DAG runs only when triggered with data."""
    return _schedule(config.drift.schedule, None) if config.drift.current else None


def monitoring_schedule(config: PipelineConfig) -> Any:
    """`monitoring.schedule`, or also the labels Asset (`on_new_labels`); without `monitoring.labels`
    there is nothing to join unattended: the DAG runs only when triggered with a labels location."""
    monitoring = config.monitoring
    if monitoring is None or not monitoring.labels:
        return None
    return _schedule(monitoring.schedule, labels_asset(config) if monitoring.on_new_labels else None)


def retraining_params(config: PipelineConfig) -> dict[str, Param]:
    """The Trigger form of `<pipeline>__retrain`."""
    from airflow.sdk import Param

    return {
        "training_data": Param(config.data.train, type="string", minLength=1, description="training data URI or path"),
        "model_params": Param({}, type="object", description="merged over model.params for this run"),
        "approval": Param(config.promotion.approval, enum=["none", "required"], description="ask a person before promoting"),
        "dry_run": Param(False, type="boolean", description="train and evaluate, never promote"),
        "reason": Param("", type="string", description="why this run was started (recorded with the promotion)"),
    }


def tuning_params(config: PipelineConfig) -> dict[str, Param]:
    """The tuning part of the `<pipeline>__retrain` Trigger form (empty without a `tuning:` section)."""
    from airflow.sdk import Param

    if config.tuning is None:
        return {}
    return {
        "tuning": Param(config.tuning.enabled, type="boolean", description="search hyperparameters before training"),
        "n_trials": Param(config.tuning.n_trials, type="integer", minimum=1, maximum=10_000,
                          description="trials in this run's search"),
    }


def inference_params(config: PipelineConfig) -> dict[str, Param]:
    """The Trigger form of `<pipeline>__batch_inference`."""
    from airflow.sdk import Param

    return {
        "input": Param(config.inference.input or "", type="string", minLength=1, description="data to score"),
        "alias": Param(config.inference.alias, type="string", minLength=1, description="model alias to score with"),
        "version": Param(None, type=["null", "integer"], minimum=1, description="a version number; wins over the alias"),
    }


def drift_params(config: PipelineConfig) -> dict[str, Param]:
    from airflow.sdk import Param

    return {"current": Param(config.drift.current or "", type="string", minLength=1, description="recent data to check")}


def monitoring_params(config: PipelineConfig) -> dict[str, Param]:
    """The Trigger form of `<pipeline>__monitor`."""
    from airflow.sdk import Param

    monitoring = config.monitoring
    labels = (monitoring.labels if monitoring else None) or ""
    window = monitoring.window if monitoring else "7d"
    return {
        "labels": Param(labels, type="string", minLength=1, description="where the labels are (file or folder)"),
        "window": Param(window, type="string", pattern=WINDOW_PATTERN,
                        description="how far back scoring runs count: a number and h, d or w"),
    }


def rollback_params(config: PipelineConfig) -> dict[str, Param]:
    from airflow.sdk import Param

    return {
        "alias": Param(config.promotion.alias, type="string", minLength=1),
        "reason": Param(type="string", minLength=3, description="why: recorded in the alias history"),
    }


def dag_kwargs(config: PipelineConfig, kind: str, doc: str) -> dict[str, Any]:
    """DAG arguments every template uses."""
    from airflow_mlops.operators.alerts import FailureAlert

    return {
        "dag_id": dag_id(config, kind),
        "description": f"{doc}: {config.description}".rstrip(": "),
        "catchup": False,  # and no start date: see _cron_timetable
        "max_active_runs": 1,
        "render_template_as_native_obj": True,
        "tags": ["mlops", config.pipeline, kind, *config.tags],
        "default_args": {
            "owner": config.owner,
            "retries": 1,
            "retry_delay": timedelta(seconds=30),
            "on_failure_callback": FailureAlert(config),
        },
        "doc_md": f"**{config.pipeline}**: {doc}. Pipeline file: `{config.pipeline}`.\n\n{config.description}",
    }


def operator_args(config: PipelineConfig) -> dict[str, Any]:
    return {"config": config.model_dump(mode="json")}


def is_drifted(result: dict[str, Any]) -> bool:
    """ShortCircuit condition of the drift DAG."""
    return bool(result and result.get("drifted"))


def is_degraded(result: dict[str, Any]) -> bool:
    """ShortCircuit condition of the monitor DAG."""
    return bool(result and result.get("degraded"))


def raise_for_broken_pipeline_files(dag_file: str) -> None:
    """Raise one ConfigError listing every broken pipeline file (see dags/pipeline_files.py)."""
    from airflow_mlops.errors import ConfigError

    loaded = load_pipeline_configs(configs_folder(dag_file), strict=False)
    if loaded.errors:
        raise ConfigError("\n".join(str(error) for error in loaded.errors.values()))


def approval_timeout(config: PipelineConfig) -> timedelta:
    return timedelta(hours=config.promotion.approval_timeout_hours)
