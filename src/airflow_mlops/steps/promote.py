"""Alias moves: promotion, approval decisions, rollback, and announcing each move."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_mlops.governance import check_rollback_run, require_approval_for_protected
from airflow_mlops.refs import ModelRef
from airflow_mlops.steps.card import refresh_model_cards
from airflow_mlops.steps.common import alias_version, test_metrics
from airflow_mlops.steps.results import AliasMoved, Lineage, model_facts

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.registry import Approval, ModelRegistry
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)


def promote_version(
    config: PipelineConfig,
    registry: ModelRegistry,
    *,
    evaluated: dict[str, Any],
    actor: str,
    reason: str,
    dag_id: str | None = None,
    run_id: str | None = None,
    approval: Approval | None = None,
    store: ArtifactStore | None = None,
) -> AliasMoved:
    """Compare-and-set the alias from the champion evaluation saw to the evaluated version.

    `approval` (who approved, their comment, when) is written on the history row of the move;
    a protected alias moves only with one. With `store`, the model cards of the versions the alias
    left and reached are brought up to date (their alias history).
    """
    model = ModelRef.from_dict(evaluated["model"])
    alias = config.promotion.alias
    current = alias_version(registry, model.name, alias)
    if current == model.version:
        log.info("%s '%s' already points at v%s (a retry); nothing to do", model.name, alias, model.version)
        return _moved(registry, model, alias, None)
    require_approval_for_protected(config, alias, approval.approver if approval else None)
    registry.set_alias(
        model.name,
        alias,
        model.version,
        expected_version=evaluated.get("champion_version"),
        actor=actor,
        reason=reason,
        dag_id=dag_id,
        run_id=run_id,
        approval=approval,
    )
    log.info("%s '%s' -> v%s (was %s)", model.name, alias, model.version, current)
    if store is not None:
        refresh_model_cards(config, registry, store, model.name, [model.version, current])
    return _moved(registry, model, alias, current)


def _moved(registry: ModelRegistry, model: ModelRef, alias: str, previous: int | None) -> AliasMoved:
    """The result of a move, with its lineage: the model artifact, the version and the move."""
    record = registry.get_version(model.name, model.version)
    return AliasMoved(
        model=model, alias=alias, previous_version=previous,
        lineage=Lineage(inputs=[record.artifact_uri], model=model_facts(record),
                        alias={"alias": alias, "toVersion": model.version, "fromVersion": previous}),
    )


def record_approval_decision(
    config: PipelineConfig,
    registry: ModelRegistry,
    *,
    evaluated: dict[str, Any],
    kind: str,
    reason: str,
    approval: Approval | None,
    actor: str,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> None:
    """A person's decision on the evaluated version that moved nothing (rejected, refused, timed out),
    appended to the promotion alias's history."""
    candidate = ModelRef.from_dict(evaluated["model"])
    registry.record_alias_decision(
        candidate.name, config.promotion.alias, candidate.version, kind=kind, actor=actor, reason=reason,
        approval=approval, dag_id=dag_id, run_id=run_id,
    )


def rollback_alias(
    config: PipelineConfig,
    registry: ModelRegistry,
    *,
    alias: str,
    actor: str,
    reason: str,
    dag_id: str | None = None,
    run_id: str | None = None,
    store: ArtifactStore | None = None,
) -> AliasMoved:
    """Move `alias` back to the version it held before its last change (a protected alias only for
    the alias admins named in the pipeline file: `actor` is the run's triggering user). With `store`,
    the model cards of both versions are brought up to date."""
    check_rollback_run(config, alias, started_by=actor)
    name = config.pipeline
    before = alias_version(registry, name, alias)
    version = registry.rollback(name, alias, reason=reason, actor=actor, dag_id=dag_id, run_id=run_id)
    if store is not None:
        refresh_model_cards(config, registry, store, name, [version.version, before])
    return _moved(registry, ModelRef(name=name, version=version.version), alias, before)


def describe_alias_move(
    config: PipelineConfig, registry: ModelRegistry, move: dict[str, Any], *, ui_base_url: str
) -> dict[str, Any]:
    """The `alias_moved` announcement of one alias-history move: a message for people and a payload
    for machines (version from -> to, who, why, who approved, test-metric changes, the version page)."""
    from urllib.parse import quote

    name, alias = move["model"], move["alias"]
    before, after = move.get("from_version"), move.get("to_version")
    old = test_metrics(registry, name, before) if before else {}
    new = test_metrics(registry, name, after) if after else {}
    changes = {
        metric: {"from": old.get(metric), "to": new.get(metric),
                 "change": new[metric] - old[metric] if _both_numbers(old.get(metric), new.get(metric)) else None}
        for metric in sorted(set(old) | set(new))
    }
    link = f"{ui_base_url}/models/{quote(name)}/versions/{after}" if after else f"{ui_base_url}/models/{quote(name)}"
    lines = [
        f"{name} '{alias}': {_version_text(before)} -> {_version_text(after)} ({move.get('kind')}) "
        f"by {move.get('actor')}",
        f"why: {move.get('reason') or '(no reason given)'}",
    ]
    if move.get("approver"):
        comment = move.get("approval_comment")
        lines.append(f"approved by {move['approver']}" + (f": {comment}" if comment else ""))
    lines += [f"{metric}: {_number_text(c['from'])} -> {_number_text(c['to'])}"
              + (f" ({c['change']:+.4g})" if c["change"] is not None else "") for metric, c in changes.items()]
    lines.append(link)
    return {"message": "\n".join(lines), "payload": {**move, "metric_changes": changes, "link": link}}


def _announced_stream(config: PipelineConfig) -> str:
    return f"announced:{config.pipeline}"


def already_announced(config: PipelineConfig, registry: ModelRegistry, move: dict[str, Any]) -> bool:
    """Whether this move (or a later one) was announced already: moves are announced in history order."""
    return int(move.get("event_id") or 0) <= (registry.alias_cursor(_announced_stream(config)) or 0)


def mark_announced(config: PipelineConfig, registry: ModelRegistry, move: dict[str, Any]) -> None:
    registry.set_alias_cursor(_announced_stream(config), int(move["event_id"]))


def _both_numbers(a: Any, b: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))


def _version_text(version: int | None) -> str:
    return f"v{version}" if version else "(none)"


def _number_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"
