"""ValidateDataOperator: the pipeline's expectations as a gate before training or scoring."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MlopsBaseOperator
from airflow_mlops.operators.links import ReportLink

if TYPE_CHECKING:
    from airflow.sdk import Context


class ValidateDataOperator(MlopsBaseOperator):
    """Run `validation.expectations` on `data_uri`; apply `validation.on_failure`.

    :param data_uri: dataset to check (templated); default the pipeline's training data.
    :param max_rows: validate only the first this many rows of very large inputs.
    :param for_scoring: the data has no target: skip target and row-count checks, and
        skip everything when `validation.before_scoring` is false.
    Returns the `DatasetRef` of the checked data; the `GateResult` goes to XCom key `gate`.

    .. seealso::
        docs/validation-and-drift.md and docs/operators.md
    """

    template_fields = ("data_uri",)
    operator_extra_links = (ReportLink(),)

    def __init__(
        self, *, data_uri: str | None = None, max_rows: int | None = None, for_scoring: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.data_uri = data_uri
        self.max_rows = max_rows
        self.for_scoring = for_scoring

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import validate_data

        uri = self.data_uri or self.pipeline.data.train
        validated = validate_data(self.pipeline, self.store, data_uri=uri, for_scoring=self.for_scoring,
                                  report_path=f"{self.run_prefix(context)}/validation.html", max_rows=self.max_rows)
        return self.finish(validated, context)  # raises when the gate stops the run (no dataset then)
