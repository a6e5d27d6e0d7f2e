"""Hyperparameter tuning as Airflow tasks: plan the study, then run its trials in mapped batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MlopsBaseOperator, RunInfo

if TYPE_CHECKING:
    from airflow.sdk import Context


class PlanTuningOperator(MlopsBaseOperator):
    """Split the data and create the run's Optuna study in the registry's database; skip when tuning is off.

    :param enabled: templated; tune in this run (default `tuning.enabled`).
    :param n_trials: templated; trials in this run (default `tuning.n_trials`).
    :param data_uri: templated; training data (default `data.train`).
    :param params_override: templated; merged over `model.params` in every trial.
    Returns one batch per mapped `TuneTrialsOperator`; pushes `{"study", "datasets"}` under the key `study`
    for the train task.

    .. seealso::
        docs/tuning.md and docs/operators.md
    """

    template_fields = ("enabled", "n_trials", "data_uri", "params_override")

    def __init__(self, *, enabled: Any = None, n_trials: Any = None, data_uri: str | None = None,
                 params_override: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.enabled = enabled
        self.n_trials = n_trials
        self.data_uri = data_uri
        self.params_override = params_override

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.steps import plan_tuning

        tuning = self.pipeline.tuning
        enabled = tuning is not None and (tuning.enabled if self.enabled is None else self.enabled)
        if not enabled:
            raise AirflowSkipException("tuning is off for this run: train uses the pipeline file's params")
        planned = plan_tuning(
            self.pipeline, self.store, self.registry,
            data_uri=self.data_uri or self.pipeline.data.train,
            n_trials=tuning.n_trials if self.n_trials is None else self.n_trials,
            params_override=self.params_override or None,
            prefix=self.run_prefix(context),
            run_id=RunInfo.from_context(context).run_id,
        )
        context["ti"].xcom_push(key="study", value={"study": planned.study, "datasets": planned.datasets})
        return self.finish(planned, context)


class TuneTrialsOperator(MlopsBaseOperator):
    """Run one batch of the study's trials (mapped with `.expand(batch=plan.output)`).

    A retry reuses the batch's finished trials and resumes the one left running; it adds none.

    .. seealso::
        docs/tuning.md and docs/operators.md
    """

    template_fields = ("batch",)

    def __init__(self, *, batch: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = batch

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.utils.net import get_hostname

        from airflow_mlops.steps import run_tuning_batch

        trials = run_tuning_batch(self.pipeline, self.store, self.registry, batch=self.batch, worker=get_hostname())
        return self.finish(trials, context)
