"""<pipeline>__drift: check recent data against the champion's training data.

On drift, `drift.on_drift` decides: `retrain` starts `<pipeline>__retrain` with
the reason in its conf, `alert` notifies, `fail` fails the run.
"""

from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG

from airflow_mlops import dag_factory
from airflow_mlops.operators import DriftCheckOperator

for config in dag_factory.pipelines(__file__):
    args = dag_factory.operator_args(config)

    with DAG(
        schedule=dag_factory.drift_schedule(config),
        params=dag_factory.drift_params(config),
        **dag_factory.dag_kwargs(config, "drift", "watch the input data for drift"),
    ):
        check = DriftCheckOperator(task_id="check_drift", current_uri="{{ params.current }}", **args)
        if config.drift.on_drift == "retrain":
            drifted = ShortCircuitOperator(
                task_id="drifted", python_callable=dag_factory.is_drifted, op_args=[check.output]
            )
            retrain = TriggerDagRunOperator(
                task_id="start_retraining",
                trigger_dag_id=dag_factory.dag_id(config, "retrain"),
                conf={"reason": "drift: {{ ti.xcom_pull(task_ids='check_drift')['gate']['summary'] }}"},
            )
            check >> drifted >> retrain
