"""What the registry pages show and do, independent of any web framework or of Airflow.

`RegistryViews` turns registry records into plain dicts for the pages and the
JSON API, carries out promotions and rollbacks with the caller as actor, and
serves HTML reports and batch manifests only from inside the artifact root.
"""

from __future__ import annotations

import os
import posixpath
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import DEFAULT_PRIMARY_METRIC
from airflow_mlops.cost import memory_text
from airflow_mlops.errors import ArtifactNotFoundError, RegistryError
from airflow_mlops.evaluation.metrics import GREATER_IS_BETTER
from airflow_mlops.governance import check_direct_move
from airflow_mlops.inference.plan import MANIFEST_NAME
from airflow_mlops.settings import dag_id
from airflow_mlops.ui.charts import (
    UNIT_INTERVAL,
    ReferenceLine,
    TimePoint,
    TimeSeries,
    bar_chart_svg,
    calibration_chart_svg,
    line_chart_svg,
    time_chart_svg,
)

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.config.schema import MonitoringConfig
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.registry.records import (
        DriftRecord,
        EvaluationRecord,
        ModelVersion,
        PerformanceRecord,
        ScoringRun,
    )
    from airflow_mlops.storage import ArtifactStore

MAX_REASON_CHARS = 2000
REPORT_SUFFIX = ".html"
MANIFEST_SUFFIX = f"/{MANIFEST_NAME}"
MONITORING_DOCS = "docs/monitoring.md"
MAX_TRIALS_SHOWN = 1000
MODELS_PER_PAGE = 50
VERSIONS_PER_PAGE = 50
MAX_VERSIONS_PER_PAGE = 500
CHART_VERSIONS = 100  # the metric chart covers the newest this many versions
RECENT_ROWS = 50  # evaluations, drift checks and batch runs listed on the model page
CHART_DRIFT_RECORDS = 200
CHART_SCORING_RUNS = 200  # the scoring-cost chart covers the newest this many batch runs
MAX_IMPORTANCE_BARS = 20  # the importance charts show the most important features; the compare page lists all kept
# Metrics that live in [0, 1]: their charts never show an axis beyond it.
UNIT_INTERVAL_METRICS = frozenset({"roc_auc", "pr_auc", "accuracy", "balanced_accuracy", "f1", "precision", "recall",
                                   "brier"})


class ArtifactRefusedError(ArtifactNotFoundError):
    """A URI the UI will not serve (not a report or manifest inside the artifact root); answered like a missing file."""


@dataclass(frozen=True)
class ModelSettings:
    """What the pages need from a model's pipeline file (defaults when there is none)."""

    primary_metric: str
    alias: str = "champion"
    retrain_dag_id: str | None = None

    @property
    def higher_is_better(self) -> bool:
        return GREATER_IS_BETTER.get(self.primary_metric, True)


class RegistryViews:
    """The registry as the UI sees it.

    :param pipelines: pipeline files by model name; they give each model its
        primary metric, promotion alias and retraining DAG.
    """

    def __init__(self, registry: ModelRegistry, store: ArtifactStore, pipelines: dict[str, PipelineConfig]) -> None:
        self.registry = registry
        self.store = store
        self.pipelines = pipelines

    def settings(self, name: str, task: str | None = None) -> ModelSettings:
        config = self.pipelines.get(name)
        if config is not None:
            return ModelSettings(
                primary_metric=config.evaluation.primary_metric or DEFAULT_PRIMARY_METRIC[config.model.task],
                alias=config.promotion.alias,
                retrain_dag_id=dag_id(config.pipeline, "retrain"),
            )
        return ModelSettings(primary_metric=DEFAULT_PRIMARY_METRIC.get(task or "", "accuracy"))

    # ------------------------------------------------------------------ reading

    def models(self, *, after: str | None = None, limit: int = MODELS_PER_PAGE) -> list[dict[str, Any]]:
        """One row per registered model (by name, after `after`): champion, its primary metric, versions,
        last training run, last drift check. A fixed number of queries, whatever the number of models."""
        page = self.registry.models_page(after=after, limit=limit)
        aliases = {m.name: self.settings(m.name).alias for m in page}
        champions = {(m.name, m.aliases[aliases[m.name]]) for m in page if aliases[m.name] in m.aliases}
        latest = {(m.name, m.latest_version) for m in page if m.latest_version}
        versions = self.registry.versions_at(champions | latest)
        evaluations = self.registry.latest_evaluations(champions)
        drift = self.registry.latest_drift([m.name for m in page])
        rows = []
        for model in page:
            newest = versions.get((model.name, model.latest_version))
            settings = self.settings(model.name, newest.task if newest else None)
            champion_version = model.aliases.get(settings.alias)
            champion = versions.get((model.name, champion_version))
            evaluation = evaluations.get((model.name, champion_version))
            rows.append({
                "name": model.name,
                "alias": settings.alias,
                "champion_version": champion_version,
                "primary_metric": settings.primary_metric,
                "primary_value": self._primary_value(champion, evaluation, settings) if champion else None,
                "versions": model.latest_version or 0,  # numbers never skip: the newest is the count
                "last_training": _run_summary(newest),
                "last_drift": _drift_summary(drift[model.name]) if model.name in drift else None,
            })
        return rows

    def models_page(self, after: str | None = None) -> dict[str, Any]:
        """A page of the models overview, with the name the next page starts after (None: the last page)."""
        rows = self.models(after=after, limit=MODELS_PER_PAGE + 1)
        return {"models": rows[:MODELS_PER_PAGE], "after": after,
                "next_after": rows[MODELS_PER_PAGE - 1]["name"] if len(rows) > MODELS_PER_PAGE else None}

    def model(
        self, name: str, *, older_than: int | None = None, newer_than: int | None = None,
        limit: int = VERSIONS_PER_PAGE,
    ) -> dict[str, Any]:
        """Everything the model page shows: one page of versions (newest first, keyset-paged by version
        number) and charts over the newest versions, so a model with 100,000 versions reads like one with 10."""
        aliases = self.registry.aliases(name)  # NotFoundError for an unknown model
        recent = list(reversed(self.registry.version_window(name, limit=CHART_VERSIONS)))
        page, paging = self._version_page(name, older_than, newer_than, limit, recent[-1].version if recent else 0)
        settings = self.settings(name, recent[-1].task if recent else None)
        config = self.pipelines.get(name)
        champion_version = aliases.get(settings.alias)
        passed = self.registry.newest_passed_version(name)
        default = passed or champion_version
        evaluations = self.registry.latest_evaluations(
            {(name, v.version) for v in page + recent} | ({(name, default)} if default else set()))
        rows = [self._version_row(v, evaluations.get((name, v.version)), settings) for v in page]
        drift = self.registry.drift_records(name, limit=CHART_DRIFT_RECORDS)
        metric_points = [(f"v{v.version}", self._primary_value(v, evaluations.get((name, v.version)), settings))
                         for v in recent]
        gate = config.evaluation.thresholds.get(settings.primary_metric) if config is not None else None
        gate_lines = [ReferenceLine(f"gate {side}", bound, "threshold")
                      for side, bound in (("min", gate.min), ("max", gate.max)) if bound is not None] if gate else []
        window = f"the newest {len(recent)} versions" if paging["total"] > len(recent) else "version"
        scoring_runs = self.registry.scoring_runs(name, limit=CHART_SCORING_RUNS)
        return {
            "name": name,
            "settings": {**settings.__dict__, "higher_is_better": settings.higher_is_better},
            "aliases": aliases,
            "rollback_targets": self.registry.rollback_targets(name),
            "versions": rows,
            "paging": paging,
            "promote": {
                **_promote_choices(rows, default, evaluations.get((name, default)) if default else None),
                "why": ("the newest version whose latest evaluation passed" if passed else
                        f"the current {settings.alias}: no version passed its evaluation" if default else
                        f"the newest version: none passed its evaluation and no {settings.alias} is set"),
            },
            "history": [e.to_dict() for e in reversed(self.registry.history(name))],
            "evaluations": [e.to_dict() for e in self.registry.recent_evaluations(name, limit=RECENT_ROWS)],
            "drift": [d.to_dict() for d in reversed(drift[-RECENT_ROWS:])],
            "scoring_runs": [_scoring_run_row(run) for run in scoring_runs[:RECENT_ROWS]],
            "training_cost_chart": _training_cost_chart(recent, window),
            "scoring_cost_chart": _scoring_cost_chart(scoring_runs),
            "metric_chart": line_chart_svg(
                metric_points, f"{settings.primary_metric} by {window}", gate_lines,
                clamp=UNIT_INTERVAL if settings.primary_metric in UNIT_INTERVAL_METRICS else None,
            ),
            "drift_chart": _drift_chart(drift, config),
        }

    def _version_page(
        self, name: str, older_than: int | None, newer_than: int | None, limit: int, latest: int
    ) -> tuple[list[ModelVersion], dict[str, Any]]:
        """`limit` versions newest first (one more is read to learn whether a further page exists), and
        the version numbers the newer and older pages start from."""
        limit = max(1, min(limit, MAX_VERSIONS_PER_PAGE))
        rows = self.registry.version_window(name, limit=limit + 1, older_than=older_than, newer_than=newer_than)
        if newer_than is not None and older_than is None:  # read upwards: the extra row is the newest
            page, has_older = rows[-limit:], newer_than >= 1
        else:
            page, has_older = rows[:limit], len(rows) > limit
        has_newer = bool(page) and page[0].version < latest
        return page, {
            "limit": limit,
            "total": latest,  # version numbers never skip, and versions are never deleted
            "newer": page[0].version if page and has_newer else None,
            "older": page[-1].version if page and has_older else None,
        }

    def monitoring(self, name: str) -> dict[str, Any]:
        """How the deployed model fares: realized and estimated performance against its limits,
        label coverage, per-slice results, data and prediction drift, and the batch-inference runs."""
        aliases = self.registry.aliases(name)  # NotFoundError for an unknown model
        newest = self.registry.version_window(name, limit=1)
        settings = self.settings(name, newest[0].task if newest else None)
        config = self.pipelines.get(name)
        monitoring_config = config.monitoring if config is not None else None
        champion_version = aliases.get(settings.alias)
        champion_evaluation = self.registry.latest_evaluations({(name, champion_version)}).get(
            (name, champion_version)) if champion_version else None
        champion_test = champion_evaluation.metrics if champion_evaluation else {}
        realized = self.registry.performance_records(name, kind="realized")
        estimated = self.registry.performance_records(name, kind="estimated")
        metrics = _monitored_metrics(settings.primary_metric, monitoring_config, realized + estimated)
        references = {
            metric: _reference_lines(metric, monitoring_config, champion_version, champion_test.get(metric))
            for metric in metrics
        }
        drift = self.registry.drift_records(name, limit=CHART_DRIFT_RECORDS)
        scoring_runs = self.registry.scoring_runs(name)
        return {
            "name": name,
            "settings": {**settings.__dict__, "higher_is_better": settings.higher_is_better},
            "configured": monitoring_config is not None,
            "thresholds_known": config is not None,
            "monitor_dag_id": f"{config.pipeline}__monitor" if monitoring_config is not None else None,
            "docs": MONITORING_DOCS,
            "champion_version": champion_version,
            "metrics": metrics,
            "reference_lines": {m: [line.__dict__ for line in lines] for m, lines in references.items()},
            "realized": [r.to_dict() for r in realized],
            "estimated": [r.to_dict() for r in estimated],
            "latest_slices": _slice_rows(realized[-1] if realized else None, metrics),
            "drift": [d.to_dict() for d in drift],
            "scoring_runs": [_scoring_run_row(run) for run in scoring_runs],
            "charts": {
                "performance": {
                    metric: time_chart_svg(
                        f"{metric} over time",
                        [_performance_series("realized", metric, realized),
                         _performance_series("estimated", metric, estimated)],
                        references[metric],
                        clamp=UNIT_INTERVAL if metric in UNIT_INTERVAL_METRICS else None,
                    )
                    for metric in metrics
                },
                "coverage": time_chart_svg(
                    "label coverage (labelled share of scored rows)",
                    [TimeSeries("coverage", "coverage",
                                [TimePoint(_period_time(r), r.coverage) for r in realized])],
                    value_range=(0.0, 1.0),
                ),
                "drift": _drift_chart(drift, config),
            },
        }

    def version(self, name: str, version: int) -> dict[str, Any]:
        record = self.registry.get_version(name, version)
        settings = self.settings(name, record.task)
        evaluations = list(reversed(self.registry.evaluations(name, version)))
        return {
            **self._version_row(record, evaluations[0] if evaluations else None, settings),
            "evaluations": [{**e.to_dict(), "slices": slice_table(e.slice_metrics)} for e in evaluations],
            "review": review(evaluations[0]) if evaluations else {},
            "primary_metric": settings.primary_metric,
            "alias_history": [
                e.to_dict() for e in reversed(self.registry.history(name)) if version in (e.from_version, e.to_version)
            ],
            **self._tuning(record),
        }

    def card(self, name: str, version: int) -> dict[str, Any]:
        """The version's model card, regenerated into the artifact store when missing or out of date."""
        from airflow_mlops.steps.card import model_card

        self.registry.get_version(name, version)  # NotFoundError for an unknown model or version
        return model_card(self.pipelines.get(name), self.registry, self.store, name, version)

    def card_html(self, name: str, version: int) -> bytes:
        """The card's HTML, read back from the artifact store under the reports' rule (inside the root)."""
        from airflow_mlops.steps.card import card_path

        self.card(name, version)
        uri = self.store.uri(card_path(name, version, "html"))
        return self.store.read_bytes(artifact_path_in_root(self.store.root, uri, REPORT_SUFFIX))

    def _tuning(self, record: ModelVersion) -> dict[str, Any]:
        """The study a tuned version came from: its summary (kept out of the tags table), importance and trials."""
        summary = (record.tags or {}).get("tuning")
        if not isinstance(summary, dict):
            return {}
        from airflow_mlops.tuning import trial_history

        importance = summary.get("importance") or {}
        return {
            "tags": {key: value for key, value in record.tags.items() if key != "tuning"},
            "tuning": {
                "summary": {key: summary.get(key) for key in
                            ("study", "metric", "direction", "n_trials", "completed", "pruned", "failed",
                             "best_trial", "best_value")},
                "best_params": summary.get("best_params") or {},
                "importance": [{"param": p, "share": v, "percent": round(100 * v, 1)}
                               for p, v in sorted(importance.items(), key=lambda kv: -kv[1])],
                "trials": trial_history(self.registry.url, str(summary.get("study")), limit=MAX_TRIALS_SHOWN),
            },
        }

    def compare(self, name: str, first: int, second: int) -> dict[str, Any]:
        """Two versions side by side: every metric and param either has, marked where they differ."""
        a, b = self.registry.get_version(name, first), self.registry.get_version(name, second)
        evaluations = self.registry.latest_evaluations({(name, first), (name, second)})

        def tested(version: int) -> dict[str, Any]:
            evaluation = evaluations.get((name, version))
            return {f"test_{k}": v for k, v in (evaluation.metrics if evaluation else {}).items()}

        return {
            "name": name,
            "versions": [first, second],
            "metrics": _side_by_side({**a.metrics, **tested(first)}, {**b.metrics, **tested(second)}),
            "params": _side_by_side(a.params, b.params),
            "lineage": _same_data(a, b) + _side_by_side(_run_lineage(a), _run_lineage(b)),
            "importance": {kind: importance_moves(evaluations.get((name, first)), evaluations.get((name, second)),
                                                  kind, key)
                           for kind, key in (("permutation", "mean"), ("contributions", "mean_abs"))},
        }

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The model versions an Airflow DAG run registered, with the evaluations it recorded."""
        versions = self.registry.versions_from_run(dag_id, run_id)
        return {
            "dag_id": dag_id,
            "run_id": run_id,
            "versions": [v.to_dict() for v in versions],
            "evaluations": [
                e.to_dict()
                for name in sorted({v.name for v in versions})
                for e in self.registry.evaluations(name)
                if e.run_id == run_id
            ],
        }

    # ------------------------------------------------------------------ actions

    def promote(
        self, name: str, alias: str, version: int, *, reason: str, actor: str, roles: list[str],
        expected_version: int | None,
    ) -> dict[str, Any]:
        """Point `alias` at `version`, provided it still points where the caller saw it (`expected_version`)
        and the caller may move it (a protected alias moves only for its alias admins)."""
        check_direct_move(self.pipelines.get(name), alias, user=actor, roles=roles)
        event = self.registry.set_alias(
            name, alias, version, expected_version=expected_version, actor=actor,
            reason=_checked_reason(reason), kind="set",
        )
        return event.to_dict()

    def rollback(
        self, name: str, alias: str, *, reason: str, actor: str, roles: list[str], expected_version: int | None
    ) -> dict[str, Any]:
        """Undo the latest change of `alias`, provided it still points where the caller saw it
        and the caller may move it."""
        check_direct_move(self.pipelines.get(name), alias, user=actor, roles=roles)
        reason = _checked_reason(reason)
        current = self.registry.aliases(name).get(alias)
        if expected_version is not None and current != expected_version:
            from airflow_mlops.errors import ConflictError

            raise ConflictError(
                f"{name} '{alias}' points at v{current}, not v{expected_version} as the page showed: "
                "it moved since; nothing was changed"
            )
        restored = self.registry.rollback(name, alias, reason=reason, actor=actor)
        return {"name": name, "alias": alias, "from_version": current, "to_version": restored.version}

    def permission_dag_id(self, name: str) -> str | None:
        """The DAG whose edit permission guards changes to this model's aliases."""
        settings = self.settings(name)
        if settings.retrain_dag_id:
            return settings.retrain_dag_id
        newest = self.registry.version_window(name, limit=1)
        return newest[0].dag_id if newest else None

    # ------------------------------------------------------------------ reports

    def report(self, uri: str) -> bytes:
        """The bytes of an HTML report, refused unless it lies inside the artifact root."""
        return self.store.read_bytes(artifact_path_in_root(self.store.root, uri, REPORT_SUFFIX))

    def manifest(self, uri: str) -> bytes:
        """The bytes of a batch-inference manifest, refused unless it lies inside the artifact root."""
        return self.store.read_bytes(artifact_path_in_root(self.store.root, uri, MANIFEST_SUFFIX))

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _primary_value(version: ModelVersion, evaluation: EvaluationRecord | None, settings: ModelSettings) -> Any:
        """The primary metric from the version's latest evaluation, else its validation score."""
        metric = settings.primary_metric
        tested = evaluation.metrics if evaluation else {}
        return tested.get(metric, version.metrics.get(f"validation_{metric}"))

    def _version_row(self, version: ModelVersion, evaluation: EvaluationRecord | None, settings: ModelSettings) -> dict[str, Any]:
        return {
            **version.to_dict(),
            "primary_value": self._primary_value(version, evaluation, settings),
            "test_metrics": evaluation.metrics if evaluation else {},
            "gate": None if evaluation is None else "passed" if evaluation.passed else "failed",
            "lineage": _lineage(version),
            "cost_text": _cost_text(version.cost),
        }


def artifact_path_in_root(root: str, uri: str, suffix: str) -> str:
    """`uri` as a path inside the artifact `root`, or `ArtifactRefusedError`.

    Only files whose URI ends in `suffix` (`.html` reports, `/_manifest.json`
    manifests) strictly inside the root qualify: no `..`, no symlink or prefix
    trick leads out of it, whatever the registry or the request says.
    """
    if not uri or "\x00" in uri or not uri.lower().endswith(suffix):
        raise ArtifactRefusedError(f"{uri!r}: not a {suffix} file of the artifact store")
    if root.startswith("s3://"):
        prefix = root.rstrip("/") + "/"
        relative = uri[len(prefix):] if uri.startswith(prefix) else ""
        if not relative or posixpath.normpath(relative) != relative or relative.startswith(("../", "/")):
            raise ArtifactRefusedError(f"{uri!r}: outside the artifact root {root}")
        return relative
    local = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" in local or not os.path.isabs(local):
        raise ArtifactRefusedError(f"{uri!r}: outside the artifact root {root}")
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(local))
    if real_root not in real.parents:
        raise ArtifactRefusedError(f"{uri!r}: outside the artifact root {root}")
    return str(real.relative_to(real_root))


def _monitored_metrics(primary: str, config: MonitoringConfig | None, records: list[PerformanceRecord]) -> list[str]:
    """The pipeline file's monitored metrics, else those the records hold; the primary metric first."""
    found = list(config.metrics or []) if config is not None else []
    found += sorted({m for r in records for m in r.metrics} - set(found))
    return sorted(found, key=lambda metric: metric != primary)


def _reference_lines(
    metric: str, config: MonitoringConfig | None, champion_version: int | None, test_value: Any
) -> list[ReferenceLine]:
    """The lines a metric's chart draws: the champion's test-set value, the floor (or ceiling) its
    allowed drop leaves, and the absolute thresholds, each only where it is known."""
    lines = []
    if isinstance(test_value, int | float) and champion_version is not None:
        lines.append(ReferenceLine(f"champion v{champion_version} test", float(test_value), "champion"))
        if config is not None and config.max_drop is not None:
            drop = config.max_drop.amount * (abs(test_value) if config.max_drop.relative else 1.0)
            worse = -1.0 if GREATER_IS_BETTER.get(metric, True) else 1.0
            lines.append(ReferenceLine("allowed drop", float(test_value) + worse * drop, "allowed-drop"))
    threshold = config.thresholds.get(metric) if config is not None else None
    if threshold is not None:
        lines += [ReferenceLine(f"threshold {side}", bound, "threshold")
                  for side, bound in (("min", threshold.min), ("max", threshold.max)) if bound is not None]
    return lines


def _period_time(record: PerformanceRecord) -> datetime:
    return record.period_end or record.at


def _performance_series(kind: str, metric: str, records: list[PerformanceRecord]) -> TimeSeries:
    points = []
    for record in records:
        band = record.bands.get(metric)
        points.append(TimePoint(_period_time(record), record.metrics.get(metric), record.passed,
                                (float(band[0]), float(band[1])) if band and None not in band else None))
    return TimeSeries(kind, kind, points)


def _slice_rows(record: PerformanceRecord | None, metrics: list[str]) -> list[dict[str, Any]]:
    """The latest realized record per slice: one row per "column=value" with its rows and metrics."""
    if record is None:
        return []
    return [
        {"slice": key, "rows": values.get("rows"), "metrics": {m: values.get(m) for m in metrics}}
        for key, values in sorted(record.slice_metrics.items())
    ]


def _checked_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise RegistryError("a reason is required; it is recorded in the alias history")
    if len(reason) > MAX_REASON_CHARS:
        raise RegistryError(f"the reason is {len(reason)} characters long; at most {MAX_REASON_CHARS} are kept")
    return reason


def _datasets(version: ModelVersion) -> dict[str, dict[str, Any]]:
    return {split: ref for split, ref in (version.datasets or {}).items() if isinstance(ref, dict)}


def _lineage(version: ModelVersion) -> dict[str, Any]:
    return {
        **{f"{split} data": f"{ref.get('uri')} ({(ref.get('fingerprint') or '')[:12]})"
           for split, ref in _datasets(version).items()},
        **_run_lineage(version),
    }


def _same_data(a: ModelVersion, b: ModelVersion) -> list[dict[str, Any]]:
    """Each split's data side by side, the same when the fingerprints match: a path alone says nothing
    (one file rewritten in place, or one content copied elsewhere)."""
    rows = []
    data_a, data_b = _datasets(a), _datasets(b)
    for split in sorted(set(data_a) | set(data_b)):
        ref_a, ref_b = data_a.get(split, {}), data_b.get(split, {})
        fingerprint = ref_a.get("fingerprint")
        same = bool(fingerprint) and fingerprint == ref_b.get("fingerprint")
        text_a, text_b = (f"{ref.get('uri')} ({(ref.get('fingerprint') or '')[:12]})" if ref else None
                          for ref in (ref_a, ref_b))
        rows.append({"key": f"{split} data", "a": text_a, "b": text_b, "differs": not same and text_a != text_b,
                     "same_data": f"same data (fingerprint {fingerprint[:12]})" if same else None})
    return rows


def _run_lineage(version: ModelVersion) -> dict[str, Any]:
    return {
        "code version": version.code_version,
        "dag run": f"{version.dag_id} / {version.run_id}" if version.dag_id else None,
        "task": version.task_id,
        "created by": version.created_by,
        **{f"{lib} version": v for lib, v in sorted((version.library_versions or {}).items())},
    }


def _promote_choices(
    rows: list[dict[str, Any]], default: int | None, default_evaluation: EvaluationRecord | None
) -> dict[str, Any]:
    """The promote form's versions (the page's active ones, and the default wherever it is), newest first,
    each marked when its latest evaluation failed; the default is the newest that passed (else the champion)."""
    choices = {row["version"]: row["gate"] for row in rows if row["status"] == "active"}
    if default is not None:
        choices.setdefault(default, None if default_evaluation is None else
                           "passed" if default_evaluation.passed else "failed")
    selected = default if default is not None else max(choices, default=None)
    return {
        "selected": selected,
        "options": [{"version": v, "failed": gate == "failed", "selected": v == selected}
                    for v, gate in sorted(choices.items(), reverse=True)],
    }


def _cost_text(cost: dict[str, Any] | None) -> str | None:
    """A version's training cost in one line: CPU-seconds, wall time, peak memory."""
    if not cost:
        return None
    parts = [f"{cost['cpu_seconds']:.3g} CPU-s" if cost.get("cpu_seconds") is not None else None,
             f"{cost['wall_seconds']:.3g} s wall" if cost.get("wall_seconds") is not None else None,
             f"{memory_text(cost.get('peak_memory_bytes'))} peak" if cost.get("peak_memory_bytes") else None]
    return " · ".join(p for p in parts if p) or None


def _scoring_run_row(run: ScoringRun) -> dict[str, Any]:
    return {**run.to_dict(), "peak_memory": memory_text(run.peak_memory_bytes)}


def _median_line(values: list[Any]) -> list[ReferenceLine]:
    """A median reference line, so one unusually costly run stands out (none for fewer than three points)."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return [ReferenceLine("median", statistics.median(numbers), "median")] if len(numbers) >= 3 else []


def _training_cost_chart(versions: list[ModelVersion], window: str) -> str:
    points = [(f"v{v.version}", (v.cost or {}).get("cpu_seconds")) for v in versions]
    return line_chart_svg(points, f"training CPU-seconds by {window}", _median_line([p for _, p in points]),
                          clamp=(0.0, None))


def _scoring_cost_chart(runs: list[ScoringRun]) -> str:
    points = [TimePoint(run.committed_at, run.cpu_seconds_per_million_rows) for run in reversed(runs)]
    return time_chart_svg(
        "batch scoring: CPU-seconds per million rows",
        [TimeSeries("CPU-s per million rows", "scoring-cost", points)],
        _median_line([p.value for p in points]), clamp=(0.0, None),
    )


def _drift_chart(drift: list[DriftRecord], config: PipelineConfig | None) -> str:
    """Data and prediction drift share over time, on a fixed 0-1 axis with the pipeline's drift threshold."""
    threshold = [ReferenceLine("drift threshold", config.drift.drift_share, "threshold")] if config else []
    return time_chart_svg(
        "drift share over time",
        [TimeSeries(f"{kind} drift", f"{kind}-drift",
                    [TimePoint(d.at, d.drift_share, d.passed) for d in drift if d.kind == kind])
         for kind in ("data", "prediction")],
        threshold,
        value_range=UNIT_INTERVAL,
    )


def slice_table(slice_metrics: dict[str, Any]) -> dict[str, Any]:
    """Per-slice results as a table: one row per "column=value" with its rows, each metric and any note."""
    columns = sorted({key for values in slice_metrics.values() if isinstance(values, dict) for key in values}
                     - {"rows", "note", "error", "failures"})
    rows = []
    for key, values in sorted(slice_metrics.items()):
        values = values if isinstance(values, dict) else {"note": values}
        failures = values.get("failures") or []
        rows.append({"slice": key, "rows": values.get("rows"), "metrics": {c: values.get(c) for c in columns},
                     "note": "; ".join(failures) or values.get("error") or values.get("note"),
                     "failed": bool(failures)})
    return {"columns": columns, "rows": rows}


def review(evaluation: EvaluationRecord) -> dict[str, Any]:
    """What a reviewer reads on the version page: fairness, per-class results, the confusion matrix,
    calibration or residuals, and feature importance, from one evaluation record (empty parts left out)."""
    found: dict[str, Any] = {}
    if evaluation.fairness:
        found["fairness"] = [_fairness_row(column, result) for column, result in evaluation.fairness.items()]
    diagnostics = evaluation.diagnostics or {}
    if diagnostics.get("per_class"):
        found["per_class"] = diagnostics["per_class"]
        matrix = diagnostics["confusion_matrix"]
        found["confusion"] = {"labels": matrix["labels"], "rows": [
            {"label": label, "cells": [{"count": count, "diagonal": i == j} for j, count in enumerate(counts)]}
            for i, (label, counts) in enumerate(zip(matrix["labels"], matrix["matrix"], strict=True))]}
    if diagnostics.get("calibration"):
        curve = diagnostics["calibration"]
        found["calibration"] = {"brier": curve.get("brier"), "chart": calibration_chart_svg(
            curve["mean_predicted"], curve["fraction_positive"], curve["rows"])}
    if (diagnostics.get("residuals") or {}).get("rows"):
        residuals = diagnostics["residuals"]
        found["residuals"] = {
            "summary": {"rows": residuals["rows"], "mean": residuals["mean"], "std": residuals["std"],
                        **residuals["quantiles"]},
            "chart": bar_chart_svg(
                [(f"decile {d['decile']}: {d['prediction_from']:.4g} to {d['prediction_to']:.4g}", d["mean_residual"])
                 for d in residuals["by_decile"]], "mean residual (true - predicted) by decile of the prediction"),
        }
    explanations = evaluation.explanations or {}
    if explanations.get("permutation"):
        found["permutation"] = _importance_chart(explanations["permutation"], "mean", "std", (
            f"permutation importance: drop in {explanations['permutation'].get('metric')} when a feature is shuffled"))
    if explanations.get("contributions"):
        found["contributions"] = _importance_chart(explanations["contributions"], "mean_abs", None,
                                                   "mean |contribution| (XGBoost TreeSHAP, margin units)")
    return found


def _fairness_row(column: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"column": column, "error": result.get("error"), "note": result.get("note"),
            "failures": result.get("failures") or [],
            "metrics": [{"metric": name, "value": value, "detail": (result.get("details") or {}).get(name)}
                        for name, value in (result.get("metrics") or {}).items()],
            "groups": [{"group": name, **values} for name, values in (result.get("groups") or {}).items()],
            "left_out": result.get("left_out") or {}}


def _importance_chart(found: dict[str, Any], key: str, spread: str | None, title: str) -> dict[str, Any]:
    features = found.get("features") or []
    shown = features[:MAX_IMPORTANCE_BARS]
    total = found.get("total_features", len(features))
    more = f" (the {len(shown)} most important of {total})" if total > len(shown) else ""
    return {"rows": found.get("rows"), "total": total, "chart": bar_chart_svg(
        [(f["feature"], f.get(key)) for f in shown], f"{title}{more}",
        errors=[f.get(spread) for f in shown] if spread else None)}


def importance_moves(a: EvaluationRecord | None, b: EvaluationRecord | None, kind: str, key: str) -> list[dict[str, Any]]:
    """Per feature: its rank and value in each version's importance (`kind`: permutation or contributions) and how
    they moved from the first to the second; features of the second version first, by its rank."""
    def ranked(evaluation: EvaluationRecord | None) -> dict[str, dict[str, Any]]:
        found = ((evaluation.explanations if evaluation else None) or {}).get(kind) or {}
        return {f["feature"]: f for f in found.get("features") or []}

    first, second = ranked(a), ranked(b)
    if not first or not second:
        return []
    order = sorted(set(first) | set(second), key=lambda f: (second.get(f, {}).get("rank", 10**9),
                                                            first.get(f, {}).get("rank", 10**9)))
    rows = []
    for feature in order:
        was, now = first.get(feature, {}), second.get(feature, {})
        rank_a, rank_b, value_a, value_b = was.get("rank"), now.get("rank"), was.get(key), now.get(key)
        rows.append({"feature": feature, "rank_a": rank_a, "rank_b": rank_b, "value_a": value_a, "value_b": value_b,
                     "rank_change": rank_a - rank_b if rank_a and rank_b else None,
                     "value_change": value_b - value_a if value_a is not None and value_b is not None else None})
    return rows


def _side_by_side(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": key, "a": a.get(key), "b": b.get(key), "differs": a.get(key) != b.get(key)}
        for key in sorted(set(a) | set(b))
    ]


def _run_summary(version: ModelVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {"version": version.version, "dag_id": version.dag_id, "run_id": version.run_id,
            "at": version.created_at.isoformat()}


def _drift_summary(record: DriftRecord) -> dict[str, Any]:
    return {"passed": record.passed, "drift_share": record.drift_share, "at": record.at.isoformat(),
            "report_uri": record.report_uri}
