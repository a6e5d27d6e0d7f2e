"""Extra links on our tasks: the HTML reports and the model version, served by the registry UI plugin.

Airflow's pattern for provider links: the task `persist`s the link's target to XCom while it runs,
and `get_link` reads it back by the task instance's key, so a link never depends on operator
attributes set during `execute`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator, Context

UI_PREFIX = "/mlops"


class _PersistedLink(BaseOperatorLink):
    """A link whose target the task stored in XCom under `key` (nothing stored: no link)."""

    key: ClassVar[str]

    @classmethod
    def persist(cls, context: Context, target: dict[str, Any] | None) -> None:
        if target:
            context["ti"].xcom_push(key=cls.key, value=target)

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        target = XCom.get_value(key=self.key, ti_key=ti_key)
        return self.format_link(target) if target else ""

    def format_link(self, target: dict[str, Any]) -> str:
        raise NotImplementedError


class ReportLink(_PersistedLink):
    """Opens the HTML report the task wrote (validation, evaluation, drift or monitoring)."""

    name = "Report"
    key = "mlops_report"

    @classmethod
    def persist_report(cls, context: Context, report: Any) -> None:
        """`report`: the task's report ArtifactRef, or None when it wrote none."""
        cls.persist(context, {"uri": report.uri} if report is not None else None)

    def format_link(self, target: dict[str, Any]) -> str:
        return f"{UI_PREFIX}/reports?uri={quote(target['uri'], safe='')}"


class ModelVersionLink(_PersistedLink):
    """Opens the model version the task registered, promoted or rolled back to."""

    name = "Model version"
    key = "mlops_model_version"

    def format_link(self, target: dict[str, Any]) -> str:
        return f"{UI_PREFIX}/models/{quote(str(target['name']))}/versions/{int(target['version'])}"
