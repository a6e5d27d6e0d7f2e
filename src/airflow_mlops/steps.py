"""The pipeline steps the operators call: one function per task, plain Python, no Airflow.

Each step composes the ML modules (data, training, evaluation, registry, drift,
inference, monitoring) and returns small JSON-ready dicts or typed results with
`to_dict()`, so the same steps run from a test, a notebook or an Airflow task.
Registry writes happen here, never inside the ML modules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import window_timedelta
from airflow_mlops.errors import ConfigError, NotFoundError, RegistryError
from airflow_mlops.governance import check_rollback_run, require_approval_for_protected
from airflow_mlops.refs import DatasetRef, GateResult, ModelRef

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.registry import Approval, ModelRegistry, PerformanceRecord
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


@dataclass(frozen=True)
class ValidationOutcome:
    """The checked dataset (None when the gate stops the run: fingerprinting it would be wasted), and the
    gate (None when scoring data is not checked: validation.before_scoring)."""

    dataset: DatasetRef | None
    gate: GateResult | None


def validate_data(
    config: PipelineConfig,
    store: ArtifactStore,
    *,
    data_uri: str,
    report_path: str,
    for_scoring: bool = False,
    max_rows: int | None = None,
) -> ValidationOutcome:
    """Run the pipeline's expectations on `data_uri`; for scoring data, without the target's checks."""
    from airflow_mlops.data import dataset_ref
    from airflow_mlops.validation import scoring_checks, validate_dataset

    checks = config.validation
    if for_scoring:
        if not checks.before_scoring:
            log.info("validation.before_scoring is false: %s is not checked", data_uri)
            return ValidationOutcome(dataset=dataset_ref(data_uri, store), gate=None)
        checks = scoring_checks(checks, config.data.target)
    gate = validate_dataset(data_uri, checks, store, report_path=report_path, max_rows=max_rows)
    goes_on = gate.passed or gate.policy == "warn"
    return ValidationOutcome(dataset=dataset_ref(data_uri, store) if goes_on else None, gate=gate)


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
    tuning: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Split `data_uri`, train, and register the version (idempotent per dag/run/task).

    With `tuning` (the plan step's `{"study", "datasets"}`), train on the split the trials used,
    with the study's best params over `params_override`, and record the study in the version's tags.
    """
    from airflow_mlops.data import read_table
    from airflow_mlops.training import train_model

    name = config.pipeline
    existing = registry.find_version_by_run(name, lineage["dag_id"], lineage["run_id"], lineage["task_id"])
    if existing is not None and store.exists(existing.artifact_uri):
        log.info("this run already registered %s v%s; returning it instead of training again", name, existing.version)
        return {"model": ModelRef(name=name, version=existing.version).to_dict(), "datasets": existing.datasets}

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
        tags=tags,
    )
    return {"model": ModelRef(name=name, version=version.version).to_dict(), "datasets": dataset_dicts}


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


# -------------------------------------------------------------------------- tuning


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
) -> dict[str, Any]:
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
    return {"study": plan.study, "datasets": plan.datasets, "batches": plan.batches()}


def run_tuning_batch(
    config: PipelineConfig, store: ArtifactStore, registry: ModelRegistry, *, batch: dict[str, Any],
    worker: str | None = None,
) -> dict[str, Any]:
    """Run one mapped task's trials (see `tuning.run_batch`); returns its counts and trial numbers."""
    from airflow_mlops.data import read_table
    from airflow_mlops.tuning import TuningPlan, run_batch

    plan = TuningPlan.from_dict(batch["plan"])
    train = read_table(plan.datasets["train"]["uri"], store)
    validation = read_table(plan.datasets["validation"]["uri"], store)
    outcome = run_batch(config, plan, int(batch["index"]), train, validation, url=registry.url, worker=worker)
    log.info("tuning batch %s of %s: %s", outcome.index, plan.study, outcome.to_dict())
    return outcome.to_dict()


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
    approval: Approval | None = None,
) -> dict[str, Any]:
    """Compare-and-set the alias from the champion evaluation saw to the evaluated version.

    `approval` (who approved, their comment, when) is written on the history row of the move;
    a protected alias moves only with one.
    """
    model = ModelRef.from_dict(evaluated["model"])
    alias = config.promotion.alias
    current = _champion_version(registry, model.name, alias)
    if current == model.version:
        log.info("%s '%s' already points at v%s (a retry); nothing to do", model.name, alias, model.version)
        return {"model": model.to_dict(), "alias": alias, "previous_version": None}
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
    return {"model": model.to_dict(), "alias": alias, "previous_version": current}


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
) -> dict[str, Any]:
    """Move `alias` back to the version it held before its last change (a protected alias only for
    the alias admins named in the pipeline file: `actor` is the run's triggering user)."""
    check_rollback_run(config, alias, started_by=actor)
    name = config.pipeline
    before = _champion_version(registry, name, alias)
    version = registry.rollback(name, alias, reason=reason, actor=actor, dag_id=dag_id, run_id=run_id)
    return {"model": ModelRef(name=name, version=version.version).to_dict(), "alias": alias, "previous_version": before}


def describe_alias_move(
    config: PipelineConfig, registry: ModelRegistry, move: dict[str, Any], *, ui_base_url: str
) -> dict[str, Any]:
    """The `alias_moved` announcement of one alias-history move: a message for people and a payload
    for machines (version from -> to, who, why, who approved, test-metric changes, the version page)."""
    from urllib.parse import quote

    name, alias = move["model"], move["alias"]
    before, after = move.get("from_version"), move.get("to_version")
    old = _test_metrics(registry, name, before) if before else {}
    new = _test_metrics(registry, name, after) if after else {}
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
        "reference": store.uri(reference),
        "current": store.uri(current_uri),
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


def commit_scoring(
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    results: list[dict[str, Any]],
    dag_id: str,
    run_id: str,
) -> dict[str, Any]:
    """Write the manifest after checking every planned chunk is there; record the scoring run.

    The registry's scoring run (idempotent per dag/run: a retried commit updates
    it) is what the monitor joins labels against. `seconds` is the chunks' total
    scoring time.
    """
    from airflow_mlops.inference import BatchPlan, commit_batch

    if not results:
        raise ValueError("no chunk results to commit")
    first = results[0]
    plan = BatchPlan.from_dict(store.read_json(first["plan_uri"], expected_sha256=first["plan_sha256"]))
    manifest = commit_batch(plan, results, store)
    rows = sum(int(r["rows"]) for r in results)
    seconds = round(sum(float(r.get("seconds") or 0.0) for r in results), 3)
    registry.record_scoring_run(
        plan.model_name, plan.model_version, dag_id=dag_id, run_id=run_id, manifest_uri=manifest.uri,
        output_prefix=plan.output_prefix, rows=rows, seconds=seconds, input_fingerprint=plan.input_fingerprint,
        committed_at=datetime.now(timezone.utc),
    )
    return {"uri": manifest.uri, "sha256": manifest.sha256, "rows": rows, "name": plan.model_name,
            "version": plan.model_version, "run_id": run_id, "output_prefix": plan.output_prefix}


# ---------------------------------------------------------------------- monitoring


@dataclass(frozen=True)
class MonitorOutcome:
    """What the monitor found: the degradation gate on the champion and one realized record per version."""

    gate: GateResult
    degraded: bool
    version: int | None
    records: list[PerformanceRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate.to_dict(), "degraded": self.degraded, "version": self.version,
                "summary": self.gate.summary, "records": [r.to_dict() for r in self.records]}


@dataclass(frozen=True)
class EstimateOutcome:
    """Estimated performance of one batch run (`record` None when nothing could be estimated)."""

    estimated: bool
    summary: str
    record: PerformanceRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"estimated": self.estimated, "summary": self.summary,
                "record": self.record.to_dict() if self.record else None}


@dataclass(frozen=True)
class PredictionDriftOutcome:
    """Prediction drift of one batch run against the version's test predictions (`gate` None: not checked)."""

    checked: bool
    drifted: bool
    summary: str
    gate: GateResult | None = None
    drifted_columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "drifted": self.drifted, "summary": self.summary,
                "gate": self.gate.to_dict() if self.gate else None, "drifted_columns": list(self.drifted_columns)}


def _monitoring(config: PipelineConfig) -> Any:
    if config.monitoring is None:
        raise ConfigError(f"{config.pipeline}: the pipeline file has no monitoring: section")
    return config.monitoring


def stored_test_predictions(registry: ModelRegistry, name: str, version: int) -> tuple[str, str | None] | None:
    """(uri, sha256) of the version's held-out test predictions, from its latest evaluation that stored
    them; None when the version was evaluated before they were stored."""
    stored = [e for e in registry.evaluations(name, version) if e.predictions_uri]
    if not stored:
        return None
    return stored[-1].predictions_uri, stored[-1].predictions_sha256


def _verified(store: ArtifactStore, name: str, version: int, uri: str, sha256: str | None) -> str:
    from airflow_mlops.errors import DataError

    if sha256 and store.sha256(uri) != sha256:
        raise DataError(
            f"{name} v{version}: the stored test predictions {uri} changed after evaluation "
            "(sha256 differs from the registry's); re-run the evaluation to store them again"
        )
    return uri


def _not_stored(name: str, version: int) -> str:
    return (f"{name} v{version} has no stored test predictions (evaluated before monitoring existed); "
            "retrain or re-evaluate it to enable this check")


def monitor_performance(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    labels_uri: str | None,
    window: str | None,
    run_id: str,
    dag_id: str,
    report_path: str,
) -> MonitorOutcome:
    """Join the labels to the batch outputs committed within the window; record realized performance per
    version; gate the champion's against its own test-set metrics (`monitoring.thresholds`, `max_drop`)."""
    from airflow_mlops.monitoring import ScoredBatch, degradation_gate, realized_performance

    monitoring = _monitoring(config)
    name = config.pipeline
    labels = labels_uri or monitoring.labels
    if not labels:
        raise ConfigError(f"{name}: monitoring.labels is empty; trigger the monitor with the labels' location")
    checked_location(labels, "monitoring labels")
    span = window_timedelta(window or monitoring.window)
    since = datetime.now(timezone.utc) - span
    try:
        runs = registry.scoring_runs(name, since=since, limit=10_000)
    except NotFoundError:
        runs = []
    champion = _champion_version(registry, name, config.promotion.alias)
    if not runs:
        gate = GateResult(
            gate="degradation", passed=True, policy=_policy(monitoring.on_degradation),
            summary=f"no verdict: no batch output of {name} was committed in the last {window or monitoring.window}",
            metrics={"verdict": "none"},
        )
        return MonitorOutcome(gate=gate, degraded=False, version=champion)
    batches = [
        ScoredBatch(run_id=r.run_id, version=r.version, manifest_uri=r.manifest_uri, committed_at=r.committed_at)
        for r in sorted(runs, key=lambda r: r.committed_at)
    ]
    performances = realized_performance(config, batches, labels, store)
    gate: GateResult | None = None
    gated = champion if champion is not None and any(p.version == champion for p in performances) else None
    records = []
    for performance in performances:
        passed, summary, report_uri = None, "", None
        if performance.version == gated:
            reference = _test_metrics(registry, name, gated)
            gate = degradation_gate(config, performance, reference_metrics=reference)
            if gate.report is None:
                gate = gate.model_copy(update={"report": _write_report(store, report_path, gate, performance)})
            if gate.metrics.get("verdict") != "none":
                passed = gate.passed
            summary, report_uri = gate.summary, gate.report.uri if gate.report else None
        else:
            why = "not the champion" if champion is not None else f"no '{config.promotion.alias}' to gate"
            summary = f"v{performance.version}: recorded without a verdict ({why})"
        kwargs = {"kind": "realized", **performance.to_record()}
        if kwargs.get("scoring_run_id") is None and len(performance.scoring_run_ids) == 1:
            kwargs["scoring_run_id"] = performance.scoring_run_ids[0]
        kwargs.update(dag_id=dag_id, run_id=run_id, passed=passed, summary=summary, report_uri=report_uri)
        records.append(registry.record_performance(name, performance.version, **kwargs))
    if gate is None:
        what = f"champion v{champion}" if champion is not None else f"any '{config.promotion.alias}'"
        gate = GateResult(
            gate="degradation", passed=True, policy=_policy(monitoring.on_degradation),
            summary=f"no verdict: no labelled prediction of {what} in the window; "
                    f"{len(records)} version(s) recorded without one",
            metrics={"verdict": "none"},
        )
    degraded = not gate.passed
    log.info("monitor %s: %s", name, gate.summary)
    return MonitorOutcome(gate=gate, degraded=degraded, version=gated if gated is not None else champion,
                          records=records)


def _policy(on_degradation: str) -> str:
    return "fail" if on_degradation == "fail" else "warn"


def _test_metrics(registry: ModelRegistry, name: str, version: int) -> dict[str, Any]:
    """The version's own held-out test metrics: its latest evaluation record's (empty when never evaluated)."""
    evaluations = registry.evaluations(name, version)
    return dict(evaluations[-1].metrics) if evaluations else {}


def _write_report(store: ArtifactStore, path: str, gate: GateResult, performance: Any) -> Any:
    """A small HTML page of the verdict: the summary, each failure and the metrics, overall and per slice."""
    import html
    import json

    e = html.escape
    failures = "".join(f"<li>{e(line)}</li>" for line in gate.failures) or "<li>none</li>"
    body = (
        f"<!doctype html><meta charset='utf-8'><title>{e(gate.gate)}</title>"
        f"<h1>Realized performance of v{performance.version}</h1><p>{e(gate.summary)}</p>"
        f"<p>{performance.labelled_rows} labelled of {performance.rows} scored rows "
        f"(coverage {performance.coverage if performance.coverage is not None else 'n/a'}), "
        f"scoring runs: {e(', '.join(performance.scoring_run_ids))}</p>"
        f"<h2>Failed checks</h2><ul>{failures}</ul>"
        f"<h2>Metrics</h2><pre>{e(json.dumps(performance.metrics, indent=2, default=str))}</pre>"
        f"<h2>Slices</h2><pre>{e(json.dumps(performance.slice_metrics, indent=2, default=str))}</pre>"
        f"<h2>Notes</h2><pre>{e(chr(10).join(map(str, performance.notes)))}</pre>"
    )
    return store.write_bytes(path, body.encode())


def estimate_batch_performance(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    manifest_uri: str,
    version: int,
    run_id: str,
    dag_id: str,
) -> EstimateOutcome:
    """Estimate the batch's performance before labels arrive (CBPE, calibrated on the version's test
    predictions); recorded as 'estimated' with the batch's run id as its scoring run."""
    _monitoring(config)
    name = config.pipeline
    stored = stored_test_predictions(registry, name, version)
    if stored is None:
        summary = f"not estimated: {_not_stored(name, version)}"
        log.warning("%s", summary)
        return EstimateOutcome(estimated=False, summary=summary)
    from airflow_mlops.monitoring import estimate_performance

    estimate = estimate_performance(config, manifest_uri, _verified(store, name, version, *stored), store)
    kwargs = {"kind": "estimated", **estimate.to_record()}
    kwargs.update(dag_id=dag_id, run_id=run_id, scoring_run_id=run_id)
    if not kwargs.get("summary"):
        kwargs["summary"] = _estimate_summary(estimate)
    record = registry.record_performance(name, version, **kwargs)
    log.info("estimate %s v%s: %s", name, version, record.summary)
    return EstimateOutcome(estimated=bool(estimate.estimated), summary=record.summary, record=record)


def _estimate_summary(estimate: Any) -> str:
    if not estimate.estimated:
        return "not estimated: " + ("; ".join(map(str, estimate.notes)) or "no estimate for this task")
    shown = []
    for metric, value in estimate.metrics.items():
        band = (estimate.bands or {}).get(metric)
        low_high = f" [{band[0]:.4g}, {band[1]:.4g}]" if isinstance(band, (list, tuple)) and len(band) == 2 else ""
        shown.append(f"{metric} {value:.4g}{low_high}" if isinstance(value, (int, float)) else f"{metric} n/a")
    return f"estimated on {estimate.rows} rows: " + ", ".join(shown)


def check_batch_prediction_drift(
    config: PipelineConfig,
    store: ArtifactStore,
    registry: ModelRegistry,
    *,
    manifest_uri: str,
    version: int,
    run_id: str,
    report_path: str,
) -> PredictionDriftOutcome:
    """Compare the batch's predictions with the version's test predictions; record it as 'prediction' drift."""
    name = config.pipeline
    stored = stored_test_predictions(registry, name, version)
    if stored is None:
        summary = f"prediction drift not checked: {_not_stored(name, version)}"
        log.warning("%s", summary)
        return PredictionDriftOutcome(checked=False, drifted=False, summary=summary)
    from airflow_mlops.drift import check_prediction_drift

    reference, sha256 = stored
    result = check_prediction_drift(config, reference, manifest_uri, store, report_path=report_path,
                                    reference_sha256=sha256)
    registry.record_drift(name, version=version, run_id=run_id, kind="prediction", **result.record)
    gate: GateResult = result.gate
    return PredictionDriftOutcome(checked=True, drifted=not gate.passed, summary=gate.summary, gate=gate,
                                  drifted_columns=list(result.drifted_columns))
