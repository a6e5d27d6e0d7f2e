"""One Optuna study per retraining run, in the registry's database; trials run in batches, one per task.

Optuna's RDB storage creates its own tables (`studies`, `trials`, ... and its
own `alembic_version`) beside the registry's `mlops_*` tables, so trials run by
any worker land in one study. The plan fixes who runs what: mapped task `i` of
`k` owns the trial slots `i, i+k, i+2k, ...` and records the slot on each trial
(user attribute `slot`). A retried task therefore reuses its finished trials and
resumes the one its failed attempt left running, and never adds a trial.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import Field

from airflow_mlops.cost import measure_cost
from airflow_mlops.errors import ConfigError, TrainingError
from airflow_mlops.refs import Record

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.config.schema import TuningConfig

log = logging.getLogger(__name__)

PLAN_ATTR = "plan"
SLOT_ATTR = "slot"
CPU_SECONDS_ATTR = "cpu_seconds"  # the trial's fit and validation scoring (airflow_mlops.cost)
_STORAGES: dict[str, Any] = {}
_STORAGES_LOCK = threading.Lock()


def _storage(url: str) -> optuna.storages.BaseStorage:
    """One RDB storage per URL and process: opening one creates or checks Optuna's tables."""
    import optuna

    with _STORAGES_LOCK:
        storage = _STORAGES.get(url)
        if storage is None:
            # SQLite: wait for another process's write instead of failing at once, as the registry does.
            engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
            storage = _STORAGES[url] = optuna.storages.RDBStorage(url, engine_kwargs=engine)
        return storage


def study_name(pipeline: str, run_id: str) -> str:
    """One study per pipeline and run: a retried run continues its own study."""
    return f"{pipeline}/{run_id}"


@dataclass(frozen=True)
class TuningPlan:
    """What every trial task needs: fixed once per run and stored on the study."""

    study: str
    metric: str
    direction: str
    n_trials: int
    parallelism: int
    seed: int
    pruner: str
    deadline: str | None
    params: dict[str, Any]
    datasets: dict[str, dict[str, Any]]

    @property
    def tasks(self) -> int:
        return min(self.parallelism, self.n_trials)

    def slots(self, index: int) -> list[int]:
        if not 0 <= index < self.tasks:
            raise ConfigError(f"tuning batch {index} does not exist: the plan of {self.study} has {self.tasks} batches")
        return list(range(index, self.n_trials, self.tasks))

    def batches(self) -> list[dict[str, Any]]:
        """One item per mapped task."""
        return [{"plan": self.to_dict(), "index": index} for index in range(self.tasks)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuningPlan:
        return cls(**data)


def new_plan(config: PipelineConfig, *, study: str, n_trials: int, params: dict[str, Any],
             datasets: dict[str, dict[str, Any]]) -> TuningPlan:
    from airflow_mlops.evaluation.metrics import greater_is_better

    tuning = _tuning(config)
    metric = tuning.metric or config.evaluation.primary_metric or ""
    deadline = None
    if tuning.timeout is not None:
        deadline = datetime.fromtimestamp(time.time() + tuning.timeout, tz=timezone.utc).isoformat()
    maximize = greater_is_better(metric, config.evaluation.custom_metrics)
    return TuningPlan(
        study=study, metric=metric, direction="maximize" if maximize else "minimize", n_trials=n_trials,
        parallelism=tuning.parallelism, seed=tuning.seed, pruner=tuning.pruner, deadline=deadline,
        params=dict(params), datasets=datasets,
    )


def _tuning(config: PipelineConfig) -> TuningConfig:
    if config.tuning is None:
        raise ConfigError(f"{config.pipeline}: the pipeline file has no tuning: section")
    return config.tuning


def stored_plan(url: str, study: str) -> TuningPlan | None:
    """The plan an earlier attempt of this run stored, or None when the study does not exist yet."""
    import optuna

    try:
        found = optuna.load_study(study_name=study, storage=_storage(url))
    except KeyError:
        return None
    stored = found.user_attrs.get(PLAN_ATTR)
    return TuningPlan.from_dict(stored) if stored else None


def create_study(url: str, plan: TuningPlan) -> TuningPlan:
    """Create the run's study (or find it) and store the plan on it; returns the plan the study holds."""
    import optuna

    study = optuna.create_study(study_name=plan.study, storage=_storage(url), direction=plan.direction,
                                load_if_exists=True)
    stored = study.user_attrs.get(PLAN_ATTR)
    if stored:
        return TuningPlan.from_dict(stored)
    study.set_user_attr(PLAN_ATTR, plan.to_dict())
    return plan


def _pruner(name: str) -> optuna.pruners.BasePruner:
    import optuna

    if name == "median":
        # Reports come at rounds 1, 2, 4, 8, ...: judge from round 8 on, once 5 trials have finished.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=4)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=4)
    return optuna.pruners.NopPruner()


def _suggest(trial: optuna.Trial, config: PipelineConfig) -> dict[str, Any]:
    from airflow_mlops.config.schema import CategoricalParam, IntParam

    chosen: dict[str, Any] = {}
    for name, space in _tuning(config).space.items():
        if isinstance(space, CategoricalParam):
            chosen[name] = trial.suggest_categorical(name, space.choices)
        elif isinstance(space, IntParam):
            chosen[name] = trial.suggest_int(name, space.low, space.high, step=space.step, log=space.log)
        else:
            chosen[name] = trial.suggest_float(name, space.low, space.high, step=space.step, log=space.log)
    return chosen


def validation_score(config: PipelineConfig, model: Any, validation: pd.DataFrame, metric: str) -> float | None:
    """`metric` of `model` on the validation rows (None where it is undefined on them)."""
    from airflow_mlops.evaluation.metrics import compute_metrics

    target = config.data.target
    if model.task == "regression":
        proba, predictions = None, model.predict(validation)
    else:
        proba = model.predict_proba(validation)
        predictions = model.labels.decode(proba.argmax(axis=1))
    return compute_metrics(model.task, [metric], validation[target].to_numpy(), predictions, proba, model.classes,
                           custom=config.evaluation.custom_metrics)[metric]


def _reported_round(step: int) -> bool:
    """Rounds 1, 2, 4, 8, ... (steps 0, 1, 3, 7, ...): each report is a database write and a pruning read."""
    return (step + 1) & step == 0


class BatchOutcome(Record):
    """What one trial task did with its slots (counted as the trials run)."""

    index: int
    slots: list[int]
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    reused: int = 0
    not_started: int = 0
    trials: list[int] = Field(default_factory=list)


def run_batch(
    config: PipelineConfig,
    plan: TuningPlan,
    index: int,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    url: str,
    worker: str | None = None,
) -> BatchOutcome:
    """Run this batch's trial slots in turn; a finished slot is reused, a running one (left by a failed
    attempt) is resumed with its own params. Params a trainer refuses fail that trial and the batch goes
    on; any other error leaves the trial running and is raised, so that the task's retry resumes it."""
    import optuna
    from optuna.trial import TrialState

    from airflow_mlops.training.base import fit_model

    slots = plan.slots(index)
    outcome = BatchOutcome(index=index, slots=slots)
    with warnings.catch_warnings():
        # constant_liar (experimental since Optuna 2.8, unchanged since) keeps concurrent tasks from sampling
        # the same point; the notice about it is not for the task log.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=(plan.seed + index) % 2**32, constant_liar=True)
    study = optuna.load_study(study_name=plan.study, storage=_storage(url), sampler=sampler,
                              pruner=_pruner(plan.pruner))
    mine = {t.user_attrs[SLOT_ATTR]: t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(SLOT_ATTR) in slots}
    deadline = datetime.fromisoformat(plan.deadline) if plan.deadline else None
    sign = -1.0 if plan.direction == "maximize" else 1.0
    for slot in slots:
        earlier = mine.get(slot)
        if earlier is not None and earlier.state.is_finished():
            outcome.reused += 1
            outcome.trials.append(earlier.number)
            continue
        if deadline is not None and datetime.now(timezone.utc) >= deadline:
            outcome.not_started += 1
            continue
        if earlier is not None:
            # FrozenTrial has no public id; Trial(study, id) continues a running trial with its own params.
            trial = optuna.trial.Trial(study, earlier._trial_id)
            reported = set(earlier.intermediate_values)
            log.info("slot %s: resuming trial %s left running by an earlier attempt", slot, trial.number)
        else:
            trial, reported = study.ask(), set()
            trial.set_user_attr(SLOT_ATTR, slot)
        if worker:
            trial.set_user_attr("worker", worker)
        outcome.trials.append(trial.number)
        params = {**plan.params, **_suggest(trial, config)}

        def on_round(step: int, loss: float, trial: optuna.Trial = trial, reported: set[int] = reported) -> None:
            if not _reported_round(step) or step in reported or not math.isfinite(loss):
                return
            trial.report(sign * loss, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at round {step + 1}")

        stopped: Exception | None = None
        with measure_cost() as meter:
            try:
                fitted = fit_model(config, train, validation, params_override=params, on_round=on_round)
                value = validation_score(config, fitted.model, validation, plan.metric)
            except (optuna.TrialPruned, TrainingError) as exc:
                stopped = exc
        trial.set_user_attr(CPU_SECONDS_ATTR, meter.cost.cpu_seconds)  # a resumed trial's replaces the earlier try's
        if isinstance(stopped, optuna.TrialPruned):
            study.tell(trial, state=TrialState.PRUNED)
            outcome.pruned += 1
            continue
        if isinstance(stopped, TrainingError):
            trial.set_user_attr("error", str(stopped)[:500])
            study.tell(trial, state=TrialState.FAIL)
            outcome.failed += 1
            log.warning("trial %s failed with params %s: %s", trial.number, params, stopped)
            continue
        if value is None:
            trial.set_user_attr("error", f"{plan.metric} is undefined on the validation split")
            study.tell(trial, state=TrialState.FAIL)
            outcome.failed += 1
            continue
        study.tell(trial, value)
        outcome.completed += 1
    return outcome


@dataclass(frozen=True)
class TuningSummary:
    """The study's result as recorded in the version's lineage."""

    study: str
    metric: str
    direction: str
    n_trials: int
    completed: int
    pruned: int
    failed: int
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    importance: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_study(url: str, study: str) -> TuningSummary:
    """Best trial, counts and parameter importance (fANOVA, seeded); TrainingError when no trial completed."""
    import optuna
    from optuna.trial import TrialState

    try:
        found = optuna.load_study(study_name=study, storage=_storage(url))
    except KeyError:
        raise TrainingError(f"tuning study {study!r} does not exist in the registry database") from None
    plan = TuningPlan.from_dict(found.user_attrs[PLAN_ATTR])
    trials = found.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    if not counts[TrialState.COMPLETE]:
        errors = [t.user_attrs["error"] for t in trials if t.user_attrs.get("error")]
        why = f"; the first error: {errors[0]}" if errors else ""
        raise TrainingError(
            f"tuning study {study!r} has no completed trial ({len(trials)} started, "
            f"{counts[TrialState.FAIL]} failed, {counts[TrialState.PRUNED]} pruned){why}; "
            "check tuning.space and tuning.timeout"
        )
    best = found.best_trial
    return TuningSummary(
        study=study, metric=plan.metric, direction=plan.direction, n_trials=sum(counts.values()),
        completed=counts[TrialState.COMPLETE], pruned=counts[TrialState.PRUNED], failed=counts[TrialState.FAIL],
        best_trial=best.number, best_value=float(best.value), best_params=dict(best.params),
        importance=_importance(found, plan.seed),
    )


def _importance(study: optuna.Study, seed: int) -> dict[str, float]:
    """fANOVA importance of each searched param; empty while fewer than two trials completed or nothing varied."""
    import optuna
    from optuna.trial import TrialState

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(completed) < 2 or len({t.value for t in completed}) < 2:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    importance = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {name: round(float(value), 4) for name, value in importance.items() if math.isfinite(value)}


def trial_history(url: str, study: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    """The study's trials in order (number, state, value, params, slot, worker, seconds, cpu_seconds); [] when it
    is gone."""
    import optuna

    try:
        found = optuna.load_study(study_name=study, storage=_storage(url))
    except KeyError:
        return []
    rows = []
    for trial in found.get_trials(deepcopy=False)[:limit]:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else None
        rows.append({
            "number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "params": dict(trial.params), "slot": trial.user_attrs.get(SLOT_ATTR),
            "worker": trial.user_attrs.get("worker"), "seconds": round(seconds, 3) if seconds is not None else None,
            "cpu_seconds": trial.user_attrs.get(CPU_SECONDS_ATTR),
            "error": trial.user_attrs.get("error"),
        })
    return rows
