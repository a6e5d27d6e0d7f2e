"""<pipeline>__monitor: realized performance of the served model once labels arrive.

One DAG per pipeline file with a `monitoring:` section. Runs on
`monitoring.schedule` and, with `monitoring.on_new_labels`, whenever the labels
Asset is updated. It joins the labels to the batch outputs committed within the
window, records realized performance per version and gates the champion's
against its own test-set metrics. On degradation, `monitoring.on_degradation`
decides: `retrain` starts `<pipeline>__retrain` with the reason in its conf,
`alert` notifies, `fail` fails the run.
"""

from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG

from airflow_mlops import dag_factory
from airflow_mlops.operators import MonitorPerformanceOperator

for config in dag_factory.pipelines(__file__):
    if config.monitoring is None:
        continue
    args = dag_factory.operator_args(config)

    with DAG(
        schedule=dag_factory.monitoring_schedule(config),
        params=dag_factory.monitoring_params(config),
        **dag_factory.dag_kwargs(config, "monitor", "watch the served model's performance"),
    ):
        monitor = MonitorPerformanceOperator(
            task_id="monitor", labels_uri="{{ params.labels }}", window="{{ params.window }}", **args
        )
        if config.monitoring.on_degradation == "retrain":
            degraded = ShortCircuitOperator(
                task_id="degraded", python_callable=dag_factory.is_degraded, op_args=[monitor.output]
            )
            retrain = TriggerDagRunOperator(
                task_id="start_retraining",
                trigger_dag_id=dag_factory.dag_id(config, "retrain"),
                conf={"reason": "degradation: {{ ti.xcom_pull(task_ids='monitor')['gate']['summary'] }}"},
            )
            monitor >> degraded >> retrain
