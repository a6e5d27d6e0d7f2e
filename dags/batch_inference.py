"""<pipeline>__batch_inference: pin the model -> validate inputs -> plan -> score chunks -> commit.

Runs on `inference.schedule` and whenever the champion changes. The version is
resolved once per run, so a promotion in the middle never mixes two models in
one output; chunks are scored in parallel by dynamic task mapping. With a
`monitoring:` section, the commit is followed by prediction drift (against the
version's test predictions) and, with `monitoring.estimate`, estimated performance.
"""

from airflow.sdk import DAG

from airflow_mlops import dag_factory
from airflow_mlops.operators import (
    CommitBatchOperator,
    EstimatePerformanceOperator,
    PinModelOperator,
    PlanBatchOperator,
    PredictionDriftOperator,
    ScoreChunkOperator,
    ValidateDataOperator,
)

for config in dag_factory.pipelines(__file__):
    args = dag_factory.operator_args(config)

    with DAG(
        schedule=dag_factory.inference_schedule(config),
        params=dag_factory.inference_params(config),
        **dag_factory.dag_kwargs(config, "batch_inference", "score new data with the champion"),
    ):
        pin = PinModelOperator(task_id="pin_model", alias="{{ params.alias }}", version="{{ params.version }}", **args)
        validate = ValidateDataOperator(
            task_id="validate_input", data_uri="{{ params.input }}", for_scoring=True, **args
        )
        plan = PlanBatchOperator(task_id="plan", pinned=pin.output, input_uri="{{ params.input }}", **args)
        score = ScoreChunkOperator.partial(task_id="score", **args).expand(chunk=plan.output)
        commit = CommitBatchOperator(task_id="commit", results=score.output, **args)
        pin >> validate >> plan
        if config.monitoring is not None:
            PredictionDriftOperator(task_id="predict_drift", committed=commit.output, **args)
            if config.monitoring.estimate:
                EstimatePerformanceOperator(task_id="estimate_performance", committed=commit.output, **args)
