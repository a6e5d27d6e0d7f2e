"""DriftCheckOperator: compare recent data with the champion's training data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MlopsBaseOperator, RunInfo
from airflow_mlops.operators.links import ReportLink

if TYPE_CHECKING:
    from airflow.sdk import Context


class DriftCheckOperator(MlopsBaseOperator):
    """Check `current_uri` for drift against `drift.reference`; record it in the registry.

    With `drift.on_drift: fail` a drift fails the task; with `retrain` or `alert`
    the task succeeds and returns `{"drifted": true, ...}` for the DAG to act on.

    :param current_uri: recent data (templated); default `drift.current`.

    .. seealso::
        docs/validation-and-drift.md and docs/operators.md
    """

    template_fields = ("current_uri",)
    operator_extra_links = (ReportLink(),)

    def __init__(self, *, current_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.current_uri = current_uri

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import check_pipeline_drift

        info = RunInfo.from_context(context)
        checked = check_pipeline_drift(
            self.pipeline,
            self.store,
            self.registry,
            current_uri=self.current_uri or self.pipeline.drift.current,
            report_path=f"{self.run_prefix(context)}/drift.html",
            run_id=info.run_id,
        )
        return self.finish(checked, context)
