"""<pipeline>__retrain: validate -> [tune] -> train -> evaluate (gate) -> approval -> promote.

One DAG per pipeline file in configs/ (or $AIRFLOW_MLOPS_CONFIGS). Runs on
`retraining.schedule`, and when `retraining.on_new_data` is true also whenever
the training data Asset is updated. `<pipeline>__rollback` moves the alias back
one step.

Every alias move, from this DAG or anywhere else (registry pages, plugin API,
CLI, Python), is a row in the registry's alias history; AssetWatchers following
that history turn each move into one Asset event: the champion Asset starts
batch inference, and the alias-moves Asset starts `<pipeline>__announce`, which
sends the `alias_moved` alert.

With a `tuning:` section, the `tune` group plans an Optuna study and runs its
trials in mapped batches; train then uses the best params (see docs/tuning.md).
"""

from airflow.sdk import DAG, TaskGroup, TriggerRule

from airflow_mlops import dag_factory
from airflow_mlops.operators import (
    AnnounceAliasMovesOperator,
    EvaluateModelOperator,
    PlanTuningOperator,
    PromoteModelOperator,
    RollbackModelOperator,
    TrainModelOperator,
    TuneTrialsOperator,
    ValidateDataOperator,
)
from airflow_mlops.operators.approval import PromotionApprovalOperator

for config in dag_factory.pipelines(__file__):
    args = dag_factory.operator_args(config)

    with DAG(
        schedule=dag_factory.retraining_schedule(config),
        params={**dag_factory.retraining_params(config), **dag_factory.tuning_params(config)},
        **dag_factory.dag_kwargs(config, "retrain", "retrain, evaluate and promote"),
    ):
        validate = ValidateDataOperator(task_id="validate", data_uri="{{ params.training_data }}", **args)
        tuned = config.tuning is not None
        train = TrainModelOperator(
            task_id="train",
            data_uri="{{ params.training_data }}",
            params_override="{{ params.model_params }}",
            # None when the tune group was skipped (tuning off for this run): the file's params.
            tuning="{{ ti.xcom_pull(task_ids='tune.plan', key='study') }}" if tuned else None,
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS if tuned else TriggerRule.ALL_SUCCESS,
            **args,
        )
        if tuned:
            with TaskGroup("tune", tooltip="hyperparameter search: trials in mapped batches"):
                plan = PlanTuningOperator(
                    task_id="plan",
                    enabled="{{ params.tuning }}",
                    n_trials="{{ params.n_trials }}",
                    data_uri="{{ params.training_data }}",
                    params_override="{{ params.model_params }}",
                    **args,
                )
                trials = TuneTrialsOperator.partial(task_id="trials", **args).expand(batch=plan.output)
            validate >> plan
            trials >> train
        evaluate = EvaluateModelOperator(task_id="evaluate", trained=train.output, **args)
        approve = PromotionApprovalOperator(
            task_id="approve",
            approval="{{ params.approval }}",
            evaluated=evaluate.output,
            subject=f"Promote a new {config.pipeline} model to '{config.promotion.alias}'?",
            response_timeout=dag_factory.approval_timeout(config),
            **args,
        )
        promote = PromoteModelOperator(
            task_id="promote",
            evaluated=evaluate.output,
            approved=approve.output,
            dry_run="{{ params.dry_run }}",
            reason="{{ params.reason or None }}",
            **args,
        )
        validate >> train >> evaluate >> approve >> promote

    with DAG(
        schedule=None,
        params=dag_factory.rollback_params(config),
        **dag_factory.dag_kwargs(config, "rollback", "move the champion back one step"),
    ):
        RollbackModelOperator(task_id="rollback", alias="{{ params.alias }}", reason="{{ params.reason }}", **args)

    with DAG(
        schedule=dag_factory.alias_moves_asset(config),
        **dag_factory.dag_kwargs(config, "announce", "announce every alias move"),
    ):
        AnnounceAliasMovesOperator(task_id="announce", **args)
