"""Batch inference: pin the version, plan chunks, score one, commit the manifest."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_mlops.refs import GateResult
from airflow_mlops.steps.common import checked_location
from airflow_mlops.steps.results import (
    ChunkScored,
    ChunkTask,
    Committed,
    Lineage,
    Pinned,
    ScoringPlanned,
    model_facts,
)

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)


def pin_model(config: PipelineConfig, registry: ModelRegistry, *, alias: str, version: int | None) -> Pinned:
    """Resolve the alias once per run; an explicit version wins."""
    name = config.pipeline
    record = registry.get_version(name, version) if version is not None else registry.resolve(name, alias)
    return Pinned(name=name, version=record.version, alias=None if version is not None else alias,
                  lineage=Lineage(inputs=[record.artifact_uri], model=model_facts(record)))


def plan_scoring(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    pinned: dict[str, Any],
    run_id: str,
    input_uri: str,
    plan_path: str,
) -> ScoringPlanned:
    """Plan the chunks for the pinned version; store the plan; return one descriptor per chunk."""
    from airflow_mlops.inference import plan_batch

    checked_location(input_uri, "inference input")
    plan = plan_batch(config, registry, store, run_id=run_id, input_uri=input_uri, version=int(pinned["version"]))
    ref = store.write_json(plan_path, plan.to_dict())
    return ScoringPlanned(
        chunks=[ChunkTask(plan_uri=ref.uri, plan_sha256=ref.sha256, index=chunk.index) for chunk in plan.chunks],
        lineage=Lineage(inputs=[input_uri], outputs=[ref.uri]),
    )


def score_planned_chunk(
    config: PipelineConfig, store: ArtifactStore, *, chunk: dict[str, Any], validation_prefix: str,
    worker: str | None = None,
) -> ChunkScored:
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
    return ChunkScored(**result.to_dict(), plan_uri=chunk["plan_uri"], plan_sha256=chunk["plan_sha256"],
                       lineage=Lineage(outputs=[result.uri]))


def commit_scoring(
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    results: list[dict[str, Any]],
    dag_id: str,
    run_id: str,
) -> Committed:
    """Write the manifest after checking every planned chunk is there; record the scoring run.

    The registry's scoring run (idempotent per dag/run: a retried commit updates
    it) is what the monitor joins labels against. `seconds` is the chunks' total
    scoring time; `cpu_seconds` and `peak_memory_bytes` the manifest's cost (summed CPU-seconds,
    largest peak memory of a chunk).
    """
    from airflow_mlops.inference import BatchPlan, commit_batch

    if not results:
        raise ValueError("no chunk results to commit")
    first = results[0]
    plan = BatchPlan.from_dict(store.read_json(first["plan_uri"], expected_sha256=first["plan_sha256"]))
    manifest = commit_batch(plan, results, store)
    rows = sum(int(r["rows"]) for r in results)
    seconds = round(sum(float(r.get("seconds") or 0.0) for r in results), 3)
    cost = store.read_json(manifest.uri, expected_sha256=manifest.sha256)["cost"]
    registry.record_scoring_run(
        plan.model_name, plan.model_version, dag_id=dag_id, run_id=run_id, manifest_uri=manifest.uri,
        output_prefix=plan.output_prefix, rows=rows, seconds=seconds, input_fingerprint=plan.input_fingerprint,
        committed_at=datetime.now(timezone.utc), cpu_seconds=cost["cpu_seconds"],
        peak_memory_bytes=cost["peak_memory_bytes"],
    )
    log.info("committed %s: %s rows, %s CPU-s per million rows", manifest.uri, rows, cost["cpu_seconds_per_million_rows"])
    return Committed(
        uri=manifest.uri, sha256=manifest.sha256, rows=rows, name=plan.model_name, version=plan.model_version,
        run_id=run_id, output_prefix=plan.output_prefix,
        lineage=Lineage(inputs=[*dict.fromkeys(p.uri for c in plan.chunks for p in c.parts), plan.artifact_uri],
                        outputs=[plan.output_prefix],
                        model=model_facts(registry.get_version(plan.model_name, plan.model_version))),
    )
