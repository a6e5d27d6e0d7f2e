"""Evaluation: the candidate and the champion on the same test set, gated."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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


MAX_SLICES_IN_WORDS = 20  # an approval form stays readable; the version page lists every slice


def approval_body(registry: ModelRegistry, *, evaluated: dict[str, Any], ui_base_url: str = "/mlops") -> str:
    """The approval form's text (Markdown): the gate's summary and failures, the slices and fairness in words,
    and the links a reviewer needs. Built from the version's latest evaluation record."""
    from airflow_mlops.evaluation.metrics import fmt

    model = ModelRef.from_dict(evaluated["model"])
    gate = evaluated.get("gate") or {}
    evaluations = registry.evaluations(model.name, model.version)
    record = evaluations[-1] if evaluations else None
    lines = [f"**{model.name} v{model.version}**: {gate.get('summary') or 'not evaluated'}"]
    if gate.get("failures"):
        lines += ["", "**Failed checks**", *(f"- {failure}" for failure in gate["failures"])]
    if record is not None and record.slice_metrics:
        lines += ["", "**Slices**"]
        primary = (gate.get("metrics") or {}).get("primary_metric")
        for key, values in sorted(record.slice_metrics.items())[:MAX_SLICES_IN_WORDS]:
            if "error" in values or "note" in values:
                lines.append(f"- {key}: {values.get('error') or values.get('note')}")
                continue
            failures = values.get("failures") or []
            verdict = "; ".join(failures) if failures else "passes" if primary is None else (
                f"{primary} {fmt(values.get(primary))}")
            lines.append(f"- {key} ({values.get('rows')} rows): {verdict}")
        if len(record.slice_metrics) > MAX_SLICES_IN_WORDS:
            lines.append(f"- and {len(record.slice_metrics) - MAX_SLICES_IN_WORDS} more on the version page")
    if record is not None and record.fairness:
        lines += ["", "**Fairness**"]
        for column, result in record.fairness.items():
            if "error" in result or "note" in result:
                lines.append(f"- {column}: {result.get('error') or result.get('note')}")
            for metric, value in (result.get("metrics") or {}).items():
                lines.append(f"- {metric} on {column} is {fmt(value)} ({result['details'].get(metric, '')})")
    lines += ["", *(f"- {link}" for link in approval_links(model, ui_base_url))]
    return "\n".join(lines)


def approval_links(model: ModelRef, ui_base_url: str) -> list[str]:
    """Markdown links for the reviewer: the version page and the version's model card (written at evaluation)."""
    page = f"{ui_base_url}/models/{quote(model.name)}/versions/{model.version}"
    return [f"[Version page]({page})", f"[Model card]({page}/card)"]
