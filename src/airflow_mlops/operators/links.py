"""Extra links on our tasks: the HTML reports and the model version, served by the registry UI plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator

UI_PREFIX = "/mlops"


class ReportLink(BaseOperatorLink):
    """Opens the HTML report the task wrote (validation, evaluation or drift)."""

    name = "Report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        # Called on the worker right after execute, which sets report_uri.
        uri = getattr(operator, "report_uri", None)
        return f"{UI_PREFIX}/reports?uri={quote(uri, safe='')}" if uri else ""


class ModelVersionLink(BaseOperatorLink):
    """Opens the model version the task registered or promoted."""

    name = "Model version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        model = getattr(operator, "model_ref", None)
        return f"{UI_PREFIX}/models/{quote(model.name)}/versions/{model.version}" if model else ""
