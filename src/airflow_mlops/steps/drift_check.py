"""Input drift: recent data against the reference, recorded in the registry."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow_mlops.errors import RegistryError
from airflow_mlops.refs import GateResult, ModelRef
from airflow_mlops.steps.common import alias_version, checked_location
from airflow_mlops.steps.results import DriftChecked, Lineage, Watch

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)


def check_pipeline_drift(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    current_uri: str,
    report_path: str,
    run_id: str | None = None,
) -> DriftChecked:
    """Compare `current_uri` with the reference (the champion's training data by default)."""
    from airflow_mlops.drift import check_drift

    checked_location(current_uri, "drift current data")
    name = config.pipeline
    champion_version = alias_version(registry, name, config.promotion.alias)
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
    return DriftChecked(
        drifted=not gate.passed, drifted_columns=result.drifted_columns, reference=store.uri(reference),
        current=store.uri(current_uri), model=model_ref, gate=gate, run_id=run_id,
        lineage=Lineage(inputs=[reference, current_uri], metrics=gate.metrics, metrics_split="drift"),
        watch=Watch(event="drift", headline="drift detected", fail=config.drift.on_drift == "fail"),
    )
