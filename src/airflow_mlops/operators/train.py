"""TrainModelOperator: split the data, train, and register the version with its lineage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MlopsBaseOperator, RunInfo
from airflow_mlops.operators.links import ModelVersionLink

if TYPE_CHECKING:
    from airflow.sdk import Context


class TrainModelOperator(MlopsBaseOperator):
    """Train the pipeline's model on `data_uri` and register it.

    :param data_uri: training data (templated); default `data.train`.
    :param params_override: merged over `model.params` (templated; e.g. from the Trigger form).
    :param tuning: templated; the tune plan's `{"study", "datasets"}`: train on the trials' split with the
        study's best params, recorded in the version's `tuning` tag. None (tuning off or skipped): no study.
    A retry of the same run and task returns the version it already registered
    instead of training a duplicate. Returns `{"model": ModelRef, "datasets": {...}}`.

    .. seealso::
        docs/training-and-evaluation.md and docs/operators.md
    """

    template_fields = ("data_uri", "params_override", "tuning")
    operator_extra_links = (ModelVersionLink(),)

    def __init__(
        self, *, data_uri: str | None = None, params_override: dict[str, Any] | None = None,
        tuning: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.data_uri = data_uri
        self.params_override = params_override
        self.tuning = tuning

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import train_and_register

        info = RunInfo.from_context(context)
        trained = train_and_register(
            self.pipeline,
            self.store,
            self.registry,
            data_uri=self.data_uri or self.pipeline.data.train,
            prefix=self.run_prefix(context),
            params_override=self.params_override or None,
            tuning=self.tuning or None,
            lineage={"dag_id": info.dag_id, "run_id": info.run_id, "task_id": info.task_id, "actor": info.actor},
        )
        self.log.info("registered %s version %s", trained.model.name, trained.model.version)
        return self.finish(trained, context)
