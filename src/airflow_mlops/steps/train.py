"""Training: split, train, register the version with its lineage."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_mlops.refs import DatasetRef, ModelRef
from airflow_mlops.steps.common import checked_location
from airflow_mlops.steps.results import Lineage, Trained, model_facts

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.registry import ModelRegistry, ModelVersion
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)


def train_and_register(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    data_uri: str,
    prefix: str,
    lineage: dict[str, str],
    params_override: dict[str, Any] | None = None,
    tuning: dict[str, Any] | None = None,
) -> Trained:
    """Split `data_uri`, train, and register the version (idempotent per dag/run/task).

    With `tuning` (the plan step's `{"study", "datasets"}`), train on the split the trials used,
    with the study's best params over `params_override`, and record the study in the version's tags.
    The version records where its data came from (tag `training_data`) and what training cost
    (`cost`: wall time, CPU-seconds, peak memory of splitting and training); a retry that trains
    again replaces the cost, never adds to it.
    """
    from airflow_mlops.cost import measure_cost

    name = config.pipeline
    existing = registry.find_version_by_run(name, lineage["dag_id"], lineage["run_id"], lineage["task_id"])
    if existing is not None and store.exists(existing.artifact_uri):
        log.info("this run already registered %s v%s; returning it instead of training again", name, existing.version)
        return _trained(existing, data_uri)

    with measure_cost() as meter:
        trained, datasets, tags = _train(config, store, registry, data_uri=data_uri, prefix=prefix,
                                         params_override=params_override, tuning=tuning)
    cost = meter.cost.to_dict()
    log.info("training cost: %s", cost)
    dataset_dicts = {key: ref.to_dict() for key, ref in datasets.items()}
    version = registry.register_version(
        name,
        artifact_uri=trained.model_uri,
        artifact_sha256=trained.artifact.sha256,
        flavor=config.model.flavor,
        task=config.model.task,
        params=trained.params,
        metrics={
            **{f"train_{k}": v for k, v in trained.train_metrics.items()},
            **{f"validation_{k}": v for k, v in trained.validation_metrics.items()},
        },
        datasets=dataset_dicts,
        library_versions=trained.metadata.get("library_versions", {}),
        dag_id=lineage["dag_id"],
        run_id=lineage["run_id"],
        task_id=lineage["task_id"],
        created_by=lineage.get("actor"),
        tags={**tags, "training_data": data_uri},
        cost=cost,
    )
    if version.cost != cost:  # registered by an earlier try whose model file is gone: this try's cost stands
        version = registry.set_version_cost(name, version.version, cost)
    return _trained(version, data_uri)


def _train(
    config: PipelineConfig, store: ArtifactStore, registry: ModelRegistry, *, data_uri: str, prefix: str,
    params_override: dict[str, Any] | None, tuning: dict[str, Any] | None,
) -> tuple[Any, dict[str, DatasetRef], dict[str, Any]]:
    """Split (or take the tuning study's split) and train: (trained model, splits, tags)."""
    from airflow_mlops.data import read_table
    from airflow_mlops.training import train_model

    split = config.data.split
    tags: dict[str, Any] = {}
    if tuning:
        from airflow_mlops.tuning import summarize_study

        summary = summarize_study(registry.url, tuning["study"])
        log.info("tuning study %s: best trial %s of %s, %s %s, params %s", summary.study, summary.best_trial,
                 summary.n_trials, summary.metric, summary.best_value, summary.best_params)
        datasets = {key: DatasetRef.from_dict(ref) for key, ref in tuning["datasets"].items()}
        params_override = {**(params_override or {}), **summary.best_params}
        tags["tuning"] = summary.to_dict()
    else:
        datasets = split_training_data(config, store, data_uri=data_uri, prefix=prefix)
    train = read_table(datasets["train"].uri, store)
    validation = read_table(datasets["validation"].uri, store) if split.validation > 0 else None
    trained = train_model(
        config,
        train,
        validation,
        store,
        output_prefix=f"{prefix}/model",
        checkpoint_prefix=f"{prefix}/checkpoints",
        params_override=params_override,
    )
    return trained, datasets, tags


def _trained(version: ModelVersion, data_uri: str) -> Trained:
    splits = [ref["uri"] for ref in version.datasets.values() if isinstance(ref, dict) and ref.get("uri")]
    return Trained(
        model=ModelRef(name=version.name, version=version.version), datasets=version.datasets,
        lineage=Lineage(inputs=[data_uri], outputs=[*splits, version.artifact_uri], model=model_facts(version),
                        metrics=version.metrics, metrics_split="train, validation"),
    )


def split_training_data(config: PipelineConfig, store: ArtifactStore, *, data_uri: str, prefix: str) -> dict[str, DatasetRef]:
    """Train / validation / test parquet files under `{prefix}/data` (the same data and seed give the same split)."""
    from airflow_mlops.data import read_table, split_dataset

    frame = read_table(checked_location(data_uri, "training data"), store)
    target = config.data.target
    if config.data.unlabelled_rows == "drop" and target in frame.columns:
        unlabelled = frame[target].isna()
        if unlabelled.any():
            log.warning("%s: left out %d of %d rows with no %r (data.unlabelled_rows: drop)",
                        data_uri, int(unlabelled.sum()), len(frame), target)
            frame = frame[~unlabelled]
    split = config.data.split
    return split_dataset(
        frame, target=config.data.target, validation=split.validation, test=split.test, stratify=split.stratify,
        seed=split.seed, out_prefix=f"{prefix}/data", store=store,
    )
