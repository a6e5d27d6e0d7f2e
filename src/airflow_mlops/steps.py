"""The pipeline steps the operators call: one function per task, plain Python, no Airflow.

Each step composes the ML modules (data, training, evaluation, registry, drift,
inference) and returns small JSON-ready dicts, so the same steps run from a
test, a notebook or an Airflow task.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import ConfigError, NotFoundError, RegistryError
from airflow_mlops.refs import DatasetRef, GateResult, ModelRef

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)


def _champion_version(registry: ModelRegistry, name: str, alias: str) -> int | None:
    try:
        return registry.resolve(name, alias).version
    except NotFoundError:
        return None


def _load_version(registry: ModelRegistry, store: ArtifactStore, name: str, version: int) -> Any:
    from airflow_mlops.training import load_model

    record = registry.get_version(name, version)
    return load_model(record.artifact_uri, store, expected_sha256=record.artifact_sha256)


# ------------------------------------------------------------------------ training


def checked_location(value: str, field: str) -> str:
    """A location given at trigger time meets the pipeline file's rules (no climbing out of the root)."""
    from airflow_mlops.config.schema import check_location

    try:
        check_location(value)
    except ValueError as exc:
        raise ConfigError(f"{field}: {exc}") from None
    return value


def train_and_register(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    data_uri: str,
    prefix: str,
    lineage: dict[str, str],
    params_override: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Split `data_uri`, train, and register the version (idempotent per dag/run/task)."""
    from airflow_mlops.data import read_table, split_dataset
    from airflow_mlops.training import train_model

    name = config.pipeline
    existing = registry.find_version_by_run(name, lineage["dag_id"], lineage["run_id"], lineage["task_id"])
    if existing is not None and store.exists(existing.artifact_uri):
        log.info("this run already registered %s v%s; returning it instead of training again", name, existing.version)
        return {"model": ModelRef(name=name, version=existing.version).to_dict(), "datasets": existing.datasets}

    frame = read_table(checked_location(data_uri, "training data"), store)
    split = config.data.split
    datasets = split_dataset(
        frame,
        target=config.data.target,
        validation=split.validation,
        test=split.test,
        stratify=split.stratify,
        seed=split.seed,
        out_prefix=f"{prefix}/data",
        store=store,
    )
    del frame
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
    )
    return {"model": ModelRef(name=name, version=version.version).to_dict(), "datasets": dataset_dicts}


# ---------------------------------------------------------------------- evaluation


def evaluate_version(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    trained: dict[str, Any],
    report_path: str,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Score the trained version and the current champion on the same test set; gate."""
    from airflow_mlops.data import read_table
    from airflow_mlops.evaluation import evaluate_candidate

    model = ModelRef.from_dict(trained["model"])
    test_ref = DatasetRef.from_dict(trained["datasets"]["test"])
    candidate_record = registry.get_version(model.name, model.version)
    candidate = _load_version(registry, store, model.name, model.version)
    champion_version = _champion_version(registry, model.name, config.promotion.alias)
    if champion_version == model.version:
        champion_version = None  # a retry after promotion: compare with nobody rather than itself
    champion = None
    if champion_version is not None:
        try:
            champion = _load_version(registry, store, model.name, champion_version)
        except Exception as exc:  # noqa: BLE001 - reported in the gate, not a crash
            log.warning("champion v%s cannot be loaded: %s", champion_version, exc)
    metrics = candidate_record.metrics or {}
    evaluation = evaluate_candidate(
        config,
        candidate,
        read_table(test_ref.uri, store),
        store,
        report_path=report_path,
        champion=champion,
        champion_version=champion_version,
        train_metrics={k.removeprefix("train_"): v for k, v in metrics.items() if k.startswith("train_")},
        validation_metrics={k.removeprefix("validation_"): v for k, v in metrics.items() if k.startswith("validation_")},
        test_fingerprint=test_ref.fingerprint,
    )
    registry.record_evaluation(model.name, model.version, run_id=run_id, **evaluation.record)
    return {"model": model.to_dict(), "champion_version": champion_version, "gate": evaluation.gate}


# ----------------------------------------------------------------------- promotion


def promote_version(
    config: PipelineConfig,
    registry: ModelRegistry,
    *,
    evaluated: dict[str, Any],
    actor: str,
    reason: str,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Compare-and-set the alias from the champion evaluation saw to the evaluated version."""
    model = ModelRef.from_dict(evaluated["model"])
    alias = config.promotion.alias
    current = _champion_version(registry, model.name, alias)
    if current == model.version:
        log.info("%s '%s' already points at v%s (a retry); nothing to do", model.name, alias, model.version)
        return {"model": model.to_dict(), "alias": alias, "previous_version": None}
    registry.set_alias(
        model.name,
        alias,
        model.version,
        expected_version=evaluated.get("champion_version"),
        actor=actor,
        reason=reason,
        dag_id=dag_id,
        run_id=run_id,
    )
    log.info("%s '%s' -> v%s (was %s)", model.name, alias, model.version, current)
    return {"model": model.to_dict(), "alias": alias, "previous_version": current}


def rollback_alias(
    config: PipelineConfig,
    registry: ModelRegistry,
    *,
    alias: str,
    actor: str,
    reason: str,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Move `alias` back to the version it held before its last change."""
    name = config.pipeline
    before = _champion_version(registry, name, alias)
    version = registry.rollback(name, alias, reason=reason, actor=actor, dag_id=dag_id, run_id=run_id)
    return {"model": ModelRef(name=name, version=version.version).to_dict(), "alias": alias, "previous_version": before}


# --------------------------------------------------------------------------- drift


def check_pipeline_drift(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    current_uri: str,
    report_path: str,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Compare `current_uri` with the reference (the champion's training data by default)."""
    from airflow_mlops.drift import check_drift

    checked_location(current_uri, "drift current data")
    name = config.pipeline
    champion_version = _champion_version(registry, name, config.promotion.alias)
    model_ref = ModelRef(name=name, version=champion_version) if champion_version else None
    if config.drift.reference == "training":
        if champion_version is None:
            raise RegistryError(
                f"{name}: drift.reference is 'training' but there is no '{config.promotion.alias}' yet; "
                "promote a model first or set drift.reference to a dataset"
            )
        datasets = registry.get_version(name, champion_version).datasets or {}
        if "train" not in datasets:
            raise RegistryError(f"{name} v{champion_version} records no training dataset to compare with")
        reference = datasets["train"]["uri"]
        cache_key = f"v{champion_version}"
    else:
        reference, cache_key = config.drift.reference, None
    result = check_drift(
        config,
        reference,
        current_uri,
        store,
        report_path=report_path,
        reference_cache_key=cache_key,
    )
    registry.record_drift(name, version=champion_version, run_id=run_id, **result.record)
    gate: GateResult = result.gate
    return {
        "drifted": not gate.passed,
        "drifted_columns": result.drifted_columns,
        "model": model_ref.to_dict() if model_ref else None,
        "gate": gate,
        "run_id": run_id,
    }


# ----------------------------------------------------------------------- inference


def pin_model(config: PipelineConfig, registry: ModelRegistry, *, alias: str, version: int | None) -> dict[str, Any]:
    """Resolve the alias once per run; an explicit version wins."""
    name = config.pipeline
    record = registry.get_version(name, version) if version is not None else registry.resolve(name, alias)
    return {"name": name, "version": record.version, "alias": None if version is not None else alias}


def plan_scoring(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    pinned: dict[str, Any],
    run_id: str,
    input_uri: str,
    plan_path: str,
) -> list[dict[str, Any]]:
    """Plan the chunks for the pinned version; store the plan; return one descriptor per chunk."""
    from airflow_mlops.inference import plan_batch

    checked_location(input_uri, "inference input")
    plan = plan_batch(config, registry, store, run_id=run_id, input_uri=input_uri, version=int(pinned["version"]))
    ref = store.write_json(plan_path, plan.to_dict())
    return [{"plan_uri": ref.uri, "plan_sha256": ref.sha256, "index": chunk.index} for chunk in plan.chunks]


def score_planned_chunk(
    config: PipelineConfig, store: ArtifactStore, *, chunk: dict[str, Any], validation_prefix: str,
    worker: str | None = None,
) -> dict[str, Any]:
    """Score one planned chunk, validating it first when `validation.before_scoring` is set."""
    from airflow_mlops.inference import BatchPlan, score_chunk

    plan = BatchPlan.from_dict(store.read_json(chunk["plan_uri"], expected_sha256=chunk["plan_sha256"]))
    validate = None
    if config.validation.before_scoring and config.validation.expectations:
        from airflow_mlops.validation import scoring_checks, validate_dataframe

        checks = scoring_checks(config.validation, config.data.target)

        def validate(frame: Any) -> GateResult:
            return validate_dataframe(
                frame, checks, store, report_path=f"{validation_prefix}/validation.html", dataset_name="chunk"
            )

    result = score_chunk(plan, chunk["index"], store, validate=validate, worker=worker)
    return {**result.to_dict(), "plan_uri": chunk["plan_uri"], "plan_sha256": chunk["plan_sha256"]}


def commit_scoring(store: ArtifactStore, *, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the manifest after checking every planned chunk is there."""
    from airflow_mlops.inference import BatchPlan, commit_batch

    if not results:
        raise ValueError("no chunk results to commit")
    first = results[0]
    plan = BatchPlan.from_dict(store.read_json(first["plan_uri"], expected_sha256=first["plan_sha256"]))
    manifest = commit_batch(plan, results, store)
    return {"uri": manifest.uri, "sha256": manifest.sha256, "rows": sum(int(r["rows"]) for r in results)}
