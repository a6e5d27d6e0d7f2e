"""<pipeline>__retrain: validate -> train -> evaluate (gate) -> approval -> promote.

One DAG per pipeline file in configs/ (or $AIRFLOW_MLOPS_CONFIGS). Runs on
`retraining.schedule`, and when `retraining.on_new_data` is true also whenever
the training data Asset is updated. Promotion emits the champion Asset, which
starts batch inference. `<pipeline>__rollback` moves the alias back one step.
"""

from airflow.sdk import DAG

from airflow_mlops import templates
from airflow_mlops.operators import (
    EvaluateModelOperator,
    PromoteModelOperator,
    RollbackModelOperator,
    TrainModelOperator,
    ValidateDataOperator,
)
from airflow_mlops.operators.approval import PromotionApprovalOperator

for config in templates.pipelines(__file__):
    args = templates.operator_args(config)

    with DAG(
        schedule=templates.retraining_schedule(config),
        params=templates.retraining_params(config),
        **templates.dag_kwargs(config, "retrain", "retrain, evaluate and promote"),
    ):
        validate = ValidateDataOperator(task_id="validate", data_uri="{{ params.training_data }}", **args)
        train = TrainModelOperator(
            task_id="train",
            data_uri="{{ params.training_data }}",
            params_override="{{ params.model_params }}",
            **args,
        )
        evaluate = EvaluateModelOperator(task_id="evaluate", trained=train.output, **args)
        approve = PromotionApprovalOperator(
            task_id="approve",
            approval="{{ params.approval }}",
            subject=f"Promote a new {config.pipeline} model to '{config.promotion.alias}'?",
            body="Evaluation: {{ ti.xcom_pull(task_ids='evaluate', key='gate')['summary'] }}",
            response_timeout=templates.approval_timeout(config),
        )
        promote = PromoteModelOperator(
            task_id="promote",
            evaluated=evaluate.output,
            dry_run="{{ params.dry_run }}",
            reason="{{ params.reason or None }}",
            outlets=[templates.champion_asset(config)],
            **args,
        )
        validate >> train >> evaluate >> approve >> promote

    with DAG(
        schedule=None,
        params=templates.rollback_params(config),
        **templates.dag_kwargs(config, "rollback", "move the champion back one step"),
    ):
        RollbackModelOperator(
            task_id="rollback",
            alias="{{ params.alias }}",
            reason="{{ params.reason }}",
            outlets=[templates.champion_asset(config)],
            **args,
        )
