"""EvaluateModelOperator: score the candidate and the champion on the same test set; gate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MlopsBaseOperator, RunInfo
from airflow_mlops.operators.links import ReportLink

if TYPE_CHECKING:
    from airflow.sdk import Context


class EvaluateModelOperator(MlopsBaseOperator):
    """Evaluate the version `trained` produced; apply `evaluation.on_failure`.

    :param trained: the train task's result (templated; pass `train.output`).
    Returns `{"model", "champion_version", "gate"}`; the champion version seen here
    is what promotion later compares-and-sets against.

    .. seealso::
        docs/training-and-evaluation.md and docs/operators.md
    """

    template_fields = ("trained",)
    operator_extra_links = (ReportLink(),)

    def __init__(self, *, trained: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trained = trained

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import evaluate_version

        info = RunInfo.from_context(context)
        evaluated = evaluate_version(
            self.pipeline,
            self.store,
            self.registry,
            trained=self.trained,
            report_path=f"{self.run_prefix(context)}/evaluation.html",
            run_id=info.run_id,
        )
        return self.finish(evaluated, context)
