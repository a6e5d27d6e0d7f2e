"""Monitoring after deployment: realized performance when labels arrive, estimated performance and
prediction drift after each batch commit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MlopsBaseOperator, RunInfo
from airflow_mlops.operators.links import ReportLink

if TYPE_CHECKING:
    from airflow.sdk import Context


def _none(value: Any) -> Any:
    """A templated Param left empty renders as '' or 'None': both mean 'use the pipeline file's value'."""
    return None if value in (None, "", "None") else value


class MonitorPerformanceOperator(MlopsBaseOperator):
    """Join labels to the batch outputs committed within the window; record realized performance per
    version and gate the champion's against its own test-set metrics.

    On degradation, `monitoring.on_degradation` decides: `fail` fails the task;
    `alert` and `retrain` alert (the `degradation` event) and return
    `{"degraded": true, ...}` for the DAG to start retraining.

    :param labels_uri: where the labels are (templated); default `monitoring.labels`.
    :param window: how far back scoring runs count, e.g. '7d' (templated); default `monitoring.window`.

    .. seealso::
        docs/monitoring.md and docs/operators.md
    """

    template_fields = ("labels_uri", "window")
    operator_extra_links = (ReportLink(),)

    def __init__(self, *, labels_uri: str | None = None, window: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.labels_uri = labels_uri
        self.window = window

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import monitor_performance

        info = RunInfo.from_context(context)
        monitored = monitor_performance(
            self.pipeline, self.store, self.registry,
            labels_uri=_none(self.labels_uri), window=_none(self.window), run_id=info.run_id, dag_id=info.dag_id,
            report_path=f"{self.run_prefix(context)}/monitor.html",
        )
        return self.finish(monitored, context)


class _AfterCommit(MlopsBaseOperator):
    """Reads the commit task's result: `{"uri": manifest, "version", "run_id", ...}`."""

    template_fields = ("committed",)
    operator_extra_links = (ReportLink(),)

    def __init__(self, *, committed: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.committed = committed

    @property
    def manifest(self) -> tuple[str, int]:
        return str(self.committed["uri"]), int(self.committed["version"])


class EstimatePerformanceOperator(_AfterCommit):
    """Estimate the committed batch's performance before labels arrive (CBPE for classifiers), calibrated
    on the scoring version's test predictions; recorded as an 'estimated' performance record.

    :param committed: the commit task's result (templated; pass `commit.output`).
    A version evaluated before test predictions were stored is skipped with a note, not failed.

    .. seealso::
        docs/monitoring.md and docs/operators.md
    """

    operator_extra_links = ()

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import estimate_batch_performance

        info = RunInfo.from_context(context)
        manifest_uri, version = self.manifest
        estimated = estimate_batch_performance(
            self.pipeline, self.store, self.registry,
            manifest_uri=manifest_uri, version=version, run_id=info.run_id, dag_id=info.dag_id,
        )
        self.log.info("%s", estimated.summary)
        return self.finish(estimated, context)


class PredictionDriftOperator(_AfterCommit):
    """Compare the committed batch's predictions with the scoring version's test predictions (Evidently);
    recorded as 'prediction' drift with the batch's run id.

    On drift: alerts (`drift` event), and fails the task when `drift.on_drift` is `fail`
    (the output stays committed). Retraining on input drift is the drift DAG's job.

    :param committed: the commit task's result (templated; pass `commit.output`).

    .. seealso::
        docs/monitoring.md and docs/operators.md
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import check_batch_prediction_drift

        info = RunInfo.from_context(context)
        manifest_uri, version = self.manifest
        checked = check_batch_prediction_drift(
            self.pipeline, self.store, self.registry,
            manifest_uri=manifest_uri, version=version, run_id=info.run_id,
            report_path=f"{self.run_prefix(context)}/prediction_drift.html",
        )
        return self.finish(checked, context)
