"""Evaluation: the candidate and the champion on the same test set, gated."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_mlops.refs import DatasetRef, ModelRef
from airflow_mlops.steps.common import alias_version, load_version
from airflow_mlops.steps.results import Evaluated, Lineage, model_facts

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)


def evaluate_version(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    trained: dict[str, Any],
    report_path: str,
    run_id: str | None = None,
) -> Evaluated:
    """Score the trained version and the current champion on the same test set; gate; write the version's
    model card (docs/model-cards.md)."""
    from airflow_mlops.data import read_table
    from airflow_mlops.evaluation import evaluate_candidate
    from airflow_mlops.steps.card import write_model_card

    model = ModelRef.from_dict(trained["model"])
    test_ref = DatasetRef.from_dict(trained["datasets"]["test"])
    candidate_record = registry.get_version(model.name, model.version)
    candidate = load_version(registry, store, model.name, model.version)
    champion_version = alias_version(registry, model.name, config.promotion.alias)
    if champion_version == model.version:
        champion_version = None  # a retry after promotion: compare with nobody rather than itself
    champion = None
    if champion_version is not None:
        try:
            champion = load_version(registry, store, model.name, champion_version)
        except Exception as exc:  # reported in the gate, not a crash
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
    recorded = registry.record_evaluation(model.name, model.version, run_id=run_id, **evaluation.record)
    card = write_model_card(config, registry, store, model.name, model.version, gate=evaluation.gate)
    outputs = [recorded.predictions_uri] if recorded.predictions_uri else []
    return Evaluated(
        model=model, champion_version=champion_version, gate=evaluation.gate,
        lineage=Lineage(inputs=[candidate_record.artifact_uri, test_ref.uri], outputs=[*outputs, card.uri],
                        model=model_facts(candidate_record), metrics=recorded.metrics, metrics_split="test"),
    )
