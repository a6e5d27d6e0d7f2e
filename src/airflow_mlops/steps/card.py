"""Model cards: one per version, as JSON and HTML in the artifact store (docs/model-cards.md).

`models/<name>/<version>/model_card.json` and `model_card.html` are written when the version is
evaluated, and again when it is read (`model_card`) or promoted and the registry holds newer facts
(an alias move, a new evaluation): the stored card is never older than what it was last read for.
The card renders whatever the evaluation record holds, so new kinds of results appear without
changes here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.cost import memory_text
from airflow_mlops.storage.keys import safe_key

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.refs import ArtifactRef, GateResult
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.registry.records import EvaluationRecord, ModelVersion
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)
CARD_FORMAT = 1
CARD_NAME = "model_card"
TEMPLATES = Path(__file__).parent / "templates"
# Evaluation record fields that locate files rather than describe the model.
_PLUMBING = {"name", "version", "predictions_uri", "predictions_sha256"}
IMPORTANCE_KEYS = ("importance", "feature_importance")
NO_TIME_COLUMN = "no date or time column in the training data, so its time range is unknown"


def card_path(name: str, version: int, suffix: str) -> str:
    """The card's store key: `models/<name>/<version>/model_card.<suffix>` (`json` or `html`)."""
    return f"models/{safe_key(name, 'model name')}/{int(version)}/{CARD_NAME}.{suffix}"


def build_model_card(
    config: PipelineConfig | None,
    registry: ModelRegistry,
    store: ArtifactStore,
    name: str,
    version: int,
    *,
    gate: GateResult | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of `name` v`version` as JSON-ready data (see docs/model-cards.md for its sections).

    `gate`: the evaluation's gate, for its summary and failures (the registry keeps only pass or
    fail); without it they are taken from `previous` (the stored card) when it describes the same
    evaluation. The training data's time range is read once per training split.
    """
    record = registry.get_version(name, version)
    evaluations = registry.evaluations(name, version)
    evaluation = evaluations[-1] if evaluations else None
    previous = previous or {}
    card = {
        "format": CARD_FORMAT,
        "model": {"name": name, "version": record.version, "flavor": record.flavor, "task": record.task,
                  "status": record.status, "aliases": list(record.aliases), "created_at": record.created_at.isoformat()},
        "purpose": _purpose(config, previous),
        "training_data": _training_data(record, store, previous),
        "metrics": {
            "train": {k.removeprefix("train_"): v for k, v in record.metrics.items() if k.startswith("train_")},
            "validation": {k.removeprefix("validation_"): v for k, v in record.metrics.items()
                           if k.startswith("validation_")},
            "test": dict(evaluation.metrics) if evaluation else {},
        },
        "evaluation": _evaluation(evaluation),
        "explanations": _explanations(evaluation),
        "gate": _gate(evaluation, gate, previous),
        "lineage": {
            "dag_id": record.dag_id, "run_id": record.run_id, "task_id": record.task_id,
            "code_version": record.code_version, "created_by": record.created_by,
            "artifact_uri": record.artifact_uri, "artifact_sha256": record.artifact_sha256,
            "params": record.params, "library_versions": record.library_versions,
        },
        "alias_history": [e.to_dict() for e in registry.history(name) if version in (e.from_version, e.to_version)],
        "cost": record.cost or None,
    }
    return json.loads(json.dumps(card, default=str))  # what a reader of the stored JSON sees


def write_model_card(
    config: PipelineConfig | None, registry: ModelRegistry, store: ArtifactStore, name: str, version: int,
    *, gate: GateResult | None = None,
) -> ArtifactRef:
    """Build the card and write its JSON and HTML (HTML first: the JSON says a card is complete)."""
    card = build_model_card(config, registry, store, name, version, gate=gate, previous=_stored(store, name, version))
    return _write(store, card)


def model_card(
    config: PipelineConfig | None, registry: ModelRegistry, store: ArtifactStore, name: str, version: int
) -> dict[str, Any]:
    """The version's card, regenerated (and stored) when it is missing or the registry holds newer facts."""
    previous = _stored(store, name, version)
    card = build_model_card(config, registry, store, name, version, previous=previous)
    if previous is None or previous != card or not store.exists(card_path(name, version, "html")):
        _write(store, card)
    return card


def refresh_model_cards(
    config: PipelineConfig | None, registry: ModelRegistry, store: ArtifactStore, name: str, versions: list[int | None]
) -> None:
    """Bring the cards of `versions` up to date after an alias move; the move stands even if this fails."""
    for version in dict.fromkeys(v for v in versions if v):
        try:
            model_card(config, registry, store, name, version)
        except Exception as exc:  # a card is documentation: never fail the move that made it stale
            log.warning("could not refresh the model card of %s v%s: %s", name, version, exc)


def render_model_card_html(card: dict[str, Any]) -> str:
    """The card as one self-contained HTML page (every value escaped; no script)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    environment.filters["fmt"] = _fmt
    environment.filters["size"] = lambda value: memory_text(value) or "—"
    environment.globals["inner_columns"] = _inner_columns
    return environment.get_template("model_card.html").render(card=card, generic=_generic_sections(card))


def _stored(store: ArtifactStore, name: str, version: int) -> dict[str, Any] | None:
    path = card_path(name, version, "json")
    if not store.exists(path):
        return None
    try:
        card = store.read_json(path)
    except (ValueError, OSError) as exc:
        log.warning("the stored model card %s is unreadable (%s); writing it again", path, exc)
        return None
    return card if isinstance(card, dict) and card.get("format") == CARD_FORMAT else None


def _write(store: ArtifactStore, card: dict[str, Any]) -> ArtifactRef:
    name, version = card["model"]["name"], card["model"]["version"]
    store.write_bytes(card_path(name, version, "html"), render_model_card_html(card).encode())
    ref = store.write_json(card_path(name, version, "json"), card)
    log.info("model card of %s v%s: %s", name, version, ref.uri)
    return ref


def _purpose(config: PipelineConfig | None, previous: dict[str, Any]) -> dict[str, Any]:
    if config is None:
        return previous.get("purpose") or {"description": "", "intended_use": "", "limitations": [], "owner": None,
                                           "note": "no pipeline file was found for this model"}
    return {"description": config.description, "intended_use": config.intended_use,
            "limitations": list(config.limitations), "owner": config.owner}


def _training_data(record: ModelVersion, store: ArtifactStore, previous: dict[str, Any]) -> dict[str, Any]:
    splits = {split: {"uri": ref.get("uri"), "fingerprint": ref.get("fingerprint"), "rows": ref.get("rows"),
                      "columns": len(ref.get("columns") or [])}
              for split, ref in (record.datasets or {}).items() if isinstance(ref, dict)}
    train = splits.get("train") or {}
    known = previous.get("training_data") or {}
    if train.get("fingerprint") and known.get("fingerprint") == train.get("fingerprint"):
        time_range, note = known.get("time_range") or [], known.get("time_range_note")
    else:
        time_range, note = _time_range(train.get("uri"), store)
    return {"source": (record.tags or {}).get("training_data"), "uri": train.get("uri"),
            "fingerprint": train.get("fingerprint"), "rows": train.get("rows"), "columns": train.get("columns"),
            "splits": splits, "time_range": time_range, "time_range_note": note}


def _time_range(uri: str | None, store: ArtifactStore) -> tuple[list[dict[str, Any]], str | None]:
    from airflow_mlops.data import time_ranges

    if not uri:
        return [], "the version records no training split"
    try:
        found = time_ranges(uri, store)
    except Exception as exc:  # deleted or unreadable data: the card says so instead of failing
        return [], f"the training split could not be read: {exc}"
    return found, None if found else NO_TIME_COLUMN


def _evaluation(evaluation: EvaluationRecord | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    return {k: v for k, v in evaluation.to_dict().items() if k not in _PLUMBING and k != "metrics"}


def _explanations(evaluation: EvaluationRecord | None) -> dict[str, Any] | None:
    """Feature importance, wherever the evaluation record keeps it (a field or inside its diagnostics)."""
    if evaluation is None:
        return None
    values = evaluation.to_dict()
    places = [values, *(v for v in values.values() if isinstance(v, dict))]
    for place in places:
        for key in IMPORTANCE_KEYS:
            if place.get(key):
                return {"importance": place[key]}
    return None


def _gate(evaluation: EvaluationRecord | None, gate: GateResult | None, previous: dict[str, Any]) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    result = {"passed": evaluation.passed, "compared_to_version": evaluation.compared_to_version,
              "report_uri": evaluation.report_uri, "summary": None, "failures": [], "policy": None}
    known = previous.get("gate") or {}
    same = (previous.get("evaluation") or {}).get("at") == evaluation.at.isoformat()
    if gate is not None:
        result.update(summary=gate.summary, failures=list(gate.failures), policy=gate.policy)
    elif same:
        result.update({k: known.get(k, result[k]) for k in ("summary", "failures", "policy")})
    return result


def _generic_sections(card: dict[str, Any]) -> list[tuple[str, Any]]:
    """The evaluation record's structured results beyond slices (fairness, per class, diagnostics, ...)."""
    evaluation = card.get("evaluation") or {}
    return [(key, value) for key, value in evaluation.items()
            if isinstance(value, dict | list) and value and key != "slice_metrics" and key not in IMPORTANCE_KEYS]


def _inner_columns(value: Any) -> list[str]:
    """For a mapping of mappings (slices, classes, groups), the union of the inner keys: a table's columns."""
    if not isinstance(value, dict) or not value or not all(isinstance(v, dict) for v in value.values()):
        return []
    return list(dict.fromkeys(k for v in value.values() for k in v))


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
