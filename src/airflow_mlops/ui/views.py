"""What the registry pages show and do, independent of any web framework or of Airflow.

`RegistryViews` turns registry records into plain dicts for the pages and the
JSON API, carries out promotions and rollbacks with the caller as actor, and
serves HTML reports and batch manifests only from inside the artifact root.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.config.schema import DEFAULT_PRIMARY_METRIC
from airflow_mlops.errors import ArtifactNotFoundError, NotFoundError, RegistryError
from airflow_mlops.evaluation.metrics import GREATER_IS_BETTER
from airflow_mlops.governance import check_direct_move
from airflow_mlops.inference.plan import MANIFEST_NAME
from airflow_mlops.settings import dag_id
from airflow_mlops.ui.charts import (
    ReferenceLine,
    TimePoint,
    TimeSeries,
    line_chart_svg,
    time_chart_svg,
)

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.config.schema import MonitoringConfig
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.registry.records import ModelVersion, PerformanceRecord
    from airflow_mlops.storage import ArtifactStore

MAX_REASON_CHARS = 2000
REPORT_SUFFIX = ".html"
MANIFEST_SUFFIX = f"/{MANIFEST_NAME}"
MONITORING_DOCS = "docs/monitoring.md"
MAX_TRIALS_SHOWN = 1000


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

    def models(self) -> list[dict[str, Any]]:
        """One row per registered model: champion, its primary metric, last training run, last drift check."""
        rows = []
        for model in self.registry.list_models():
            versions = self.registry.search_versions(model.name)
            latest = versions[-1] if versions else None
            settings = self.settings(model.name, latest.task if latest else None)
            champion_version = model.aliases.get(settings.alias)
            test_metrics = self._latest_test_metrics(model.name)
            champion = next((v for v in versions if v.version == champion_version), None)
            drift = self.registry.drift_records(model.name)
            rows.append({
                "name": model.name,
                "alias": settings.alias,
                "champion_version": champion_version,
                "primary_metric": settings.primary_metric,
                "primary_value": self._primary_value(champion, test_metrics, settings) if champion else None,
                "versions": len(versions),
                "last_training": _run_summary(latest),
                "last_drift": _drift_summary(drift[-1]) if drift else None,
            })
        return rows

    def model(self, name: str) -> dict[str, Any]:
        """Everything the model page shows."""
        versions = self._versions_of_known_model(name)
        settings = self.settings(name, versions[-1].task if versions else None)
        test_metrics = self._latest_test_metrics(name)
        evaluations = [e.to_dict() for e in self.registry.evaluations(name)]
        drift = [d.to_dict() for d in self.registry.drift_records(name)]
        metric_points = [
            (f"v{v.version}", self._primary_value(v, test_metrics, settings)) for v in versions
        ]
        return {
            "name": name,
            "settings": {**settings.__dict__, "higher_is_better": settings.higher_is_better},
            "aliases": self.registry.aliases(name),
            "rollback_targets": self.registry.rollback_targets(name),
            "versions": [self._version_row(v, test_metrics, settings) for v in reversed(versions)],
            "history": [e.to_dict() for e in reversed(self.registry.history(name))],
            "evaluations": list(reversed(evaluations)),
            "drift": list(reversed(drift)),
            "metric_chart": line_chart_svg(metric_points, f"{settings.primary_metric} by version"),
            "drift_chart": line_chart_svg(
                [(d["at"][:16].replace("T", " "), d["drift_share"]) for d in drift], "drift share over time"
            ),
        }

    def monitoring(self, name: str) -> dict[str, Any]:
        """How the deployed model fares: realized and estimated performance against its limits,
        label coverage, per-slice results, data and prediction drift, and the batch-inference runs."""
        versions = self._versions_of_known_model(name)
        settings = self.settings(name, versions[-1].task if versions else None)
        config = self.pipelines.get(name)
        monitoring_config = config.monitoring if config is not None else None
        champion_version = self.registry.aliases(name).get(settings.alias)
        champion_test = self._latest_test_metrics(name).get(champion_version, {}) if champion_version else {}
        realized = self.registry.performance_records(name, kind="realized")
        estimated = self.registry.performance_records(name, kind="estimated")
        metrics = _monitored_metrics(settings.primary_metric, monitoring_config, realized + estimated)
        references = {
            metric: _reference_lines(metric, monitoring_config, champion_version, champion_test.get(metric))
            for metric in metrics
        }
        drift = self.registry.drift_records(name)
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
            "scoring_runs": [run.to_dict() for run in scoring_runs],
            "charts": {
                "performance": {
                    metric: time_chart_svg(
                        f"{metric} over time",
                        [_performance_series("realized", metric, realized),
                         _performance_series("estimated", metric, estimated)],
                        references[metric],
                    )
                    for metric in metrics
                },
                "coverage": time_chart_svg(
                    "label coverage (labelled share of scored rows)",
                    [TimeSeries("coverage", "coverage",
                                [TimePoint(_period_time(r), r.coverage) for r in realized])],
                    value_range=(0.0, 1.0),
                ),
                "drift": time_chart_svg(
                    "drift share over time",
                    [TimeSeries(f"{kind} drift", f"{kind}-drift",
                                [TimePoint(d.at, d.drift_share, d.passed) for d in drift if d.kind == kind])
                     for kind in ("data", "prediction")],
                    value_range=(0.0, 1.0),
                ),
            },
        }

    def version(self, name: str, version: int) -> dict[str, Any]:
        record = self.registry.get_version(name, version)
        settings = self.settings(name, record.task)
        return {
            **self._version_row(record, self._latest_test_metrics(name), settings),
            "evaluations": [e.to_dict() for e in reversed(self.registry.evaluations(name, version))],
            "primary_metric": settings.primary_metric,
            "alias_history": [
                e.to_dict() for e in reversed(self.registry.history(name)) if version in (e.from_version, e.to_version)
            ],
            **self._tuning(record),
        }

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
        test_metrics = self._latest_test_metrics(name)
        metrics_a = {**a.metrics, **{f"test_{k}": v for k, v in test_metrics.get(first, {}).items()}}
        metrics_b = {**b.metrics, **{f"test_{k}": v for k, v in test_metrics.get(second, {}).items()}}
        return {
            "name": name,
            "versions": [first, second],
            "metrics": _side_by_side(metrics_a, metrics_b),
            "params": _side_by_side(a.params, b.params),
            "lineage": _side_by_side(_lineage(a), _lineage(b)),
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
        versions = self.registry.search_versions(name)
        return versions[-1].dag_id if versions else None

    # ------------------------------------------------------------------ reports

    def report(self, uri: str) -> bytes:
        """The bytes of an HTML report, refused unless it lies inside the artifact root."""
        return self.store.read_bytes(artifact_path_in_root(self.store.root, uri, REPORT_SUFFIX))

    def manifest(self, uri: str) -> bytes:
        """The bytes of a batch-inference manifest, refused unless it lies inside the artifact root."""
        return self.store.read_bytes(artifact_path_in_root(self.store.root, uri, MANIFEST_SUFFIX))

    # ------------------------------------------------------------------ helpers

    def _versions_of_known_model(self, name: str) -> list[ModelVersion]:
        versions = self.registry.search_versions(name)
        if not versions and name not in {m.name for m in self.registry.list_models()}:
            raise NotFoundError(f"no registered model named {name!r}")
        return versions

    def _latest_test_metrics(self, name: str) -> dict[int, dict[str, Any]]:
        """Per version, the metrics of its latest evaluation on a held-out test set."""
        found: dict[int, dict[str, Any]] = {}
        for evaluation in self.registry.evaluations(name):
            found[evaluation.version] = evaluation.metrics
        return found

    @staticmethod
    def _primary_value(version: ModelVersion, test_metrics: dict[int, dict[str, Any]], settings: ModelSettings) -> Any:
        metric = settings.primary_metric
        tested = test_metrics.get(version.version, {})
        return tested.get(metric, version.metrics.get(f"validation_{metric}"))

    def _version_row(self, version: ModelVersion, test_metrics: dict[int, dict[str, Any]], settings: ModelSettings) -> dict[str, Any]:
        return {
            **version.to_dict(),
            "primary_value": self._primary_value(version, test_metrics, settings),
            "test_metrics": test_metrics.get(version.version, {}),
            "lineage": _lineage(version),
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


def _lineage(version: ModelVersion) -> dict[str, Any]:
    datasets = {
        f"{split} data": f"{ref.get('uri')} ({(ref.get('fingerprint') or '')[:12]})"
        for split, ref in (version.datasets or {}).items() if isinstance(ref, dict)
    }
    return {
        **datasets,
        "code version": version.code_version,
        "dag run": f"{version.dag_id} / {version.run_id}" if version.dag_id else None,
        "task": version.task_id,
        "created by": version.created_by,
        **{f"{lib} version": v for lib, v in sorted((version.library_versions or {}).items())},
    }


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


def _drift_summary(record: Any) -> dict[str, Any]:
    return {"passed": record.passed, "drift_share": record.drift_share, "at": record.at.isoformat(),
            "report_uri": record.report_uri}
