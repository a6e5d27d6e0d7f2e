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

    def record_evaluated(self, model: dict[str, Any], gate: Any) -> None:
        from airflow_mlops.operators.lineage import model_facts

        record = self.registry.get_version(model["name"], model["version"])
        evaluations = self.registry.evaluations(model["name"], model["version"])
        latest = evaluations[-1] if evaluations else None
        test = ((self.trained or {}).get("datasets") or {}).get("test") or {}
        self.record_lineage(inputs=[record.artifact_uri, test.get("uri")], outputs=[latest and latest.predictions_uri],
                            model=model_facts(record), metrics=latest.metrics if latest else None,
                            metrics_split="test", gate=gate.to_dict())

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import evaluate_version

        info = RunInfo.from_context(context)
        outcome = evaluate_version(
            self.pipeline,
            self.store,
            self.registry,
            trained=self.trained,
            report_path=f"{self.run_prefix(context)}/evaluation.html",
            run_id=info.run_id,
        )
        gate = outcome["gate"]
        self.record_evaluated(outcome["model"], gate)
        self.apply_gate(gate, context)
        return {**outcome, "gate": gate.to_dict()}
