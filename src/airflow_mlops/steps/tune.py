"""Tuning: plan the run's Optuna study, run one mapped task's trials."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import ConfigError
from airflow_mlops.steps.results import Lineage, TrialsRun, TuningPlanned
from airflow_mlops.steps.train import split_training_data

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)


def plan_tuning(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    data_uri: str,
    n_trials: int,
    params_override: dict[str, Any] | None,
    prefix: str,
    run_id: str,
) -> TuningPlanned:
    """Split the data once for every trial and the final fit, and create the run's study in the registry's
    database. Returns `{"study", "datasets", "batches"}`: one batch per mapped trial task. A retry finds
    the study and returns the plan stored on it."""
    from airflow_mlops.tuning import create_study, new_plan, stored_plan, study_name

    if config.tuning is None:
        raise ConfigError(f"{config.pipeline}: the pipeline file has no tuning: section")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or not 1 <= n_trials <= 10_000:
        raise ConfigError(f"n_trials: expected a whole number from 1 to 10000, got {n_trials!r}")
    name = study_name(config.pipeline, run_id)
    plan = stored_plan(registry.url, name)
    if plan is None:
        datasets = split_training_data(config, store, data_uri=data_uri, prefix=prefix)
        plan = create_study(registry.url, new_plan(
            config, study=name, n_trials=n_trials, params=params_override or {},
            datasets={key: ref.to_dict() for key, ref in datasets.items()},
        ))
    else:
        log.info("study %s exists (an earlier attempt of this run); keeping its plan", name)
    log.info("tuning %s: %s trials in %s tasks, %s on the validation split (%s)", name, plan.n_trials, plan.tasks,
             plan.metric, plan.direction)
    return TuningPlanned(study=plan.study, datasets=plan.datasets, batches=plan.batches(),
                         lineage=Lineage(inputs=[data_uri]))


def run_tuning_batch(
    config: PipelineConfig, store: ArtifactStore, registry: ModelRegistry, *, batch: dict[str, Any],
    worker: str | None = None,
) -> TrialsRun:
    """Run one mapped task's trials (see `tuning.run_batch`); returns its counts and trial numbers."""
    from airflow_mlops.data import read_table
    from airflow_mlops.tuning import TuningPlan, run_batch

    plan = TuningPlan.from_dict(batch["plan"])
    train = read_table(plan.datasets["train"]["uri"], store)
    validation = read_table(plan.datasets["validation"]["uri"], store)
    outcome = run_batch(config, plan, int(batch["index"]), train, validation, url=registry.url, worker=worker)
    log.info("tuning batch %s of %s: %s", outcome.index, plan.study, outcome.to_dict())
    return TrialsRun(**outcome.to_dict(), lineage=Lineage(inputs=[plan.datasets["train"]["uri"],
                                                                  plan.datasets["validation"]["uri"]]))
