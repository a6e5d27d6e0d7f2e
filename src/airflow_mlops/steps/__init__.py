"""The application layer: one plain function per task, no Airflow.

Each step composes the ML modules (data, training, evaluation, registry, drift, inference,
monitoring, tuning), does every registry write, and returns a typed result (`steps.results`):
its XCom value, the gate to apply and the lineage. The same steps run from a test, a notebook or
an Airflow task; `operators.base.MlopsBaseOperator.finish` ends every task the same way.
"""

from airflow_mlops.config.schema import window_timedelta
from airflow_mlops.steps.card import card_path, model_card, write_model_card
from airflow_mlops.steps.common import checked_location
from airflow_mlops.steps.drift_check import check_pipeline_drift
from airflow_mlops.steps.evaluate import approval_body, evaluate_version
from airflow_mlops.steps.monitor import (
    check_batch_prediction_drift,
    estimate_batch_performance,
    monitor_performance,
    stored_test_predictions,
)
from airflow_mlops.steps.promote import (
    already_announced,
    describe_alias_move,
    mark_announced,
    promote_version,
    record_approval_decision,
    rollback_alias,
)
from airflow_mlops.steps.score import commit_scoring, pin_model, plan_scoring, score_planned_chunk
from airflow_mlops.steps.train import split_training_data, train_and_register
from airflow_mlops.steps.tune import plan_tuning, run_tuning_batch
from airflow_mlops.steps.validate import validate_data

__all__ = [
    "already_announced", "approval_body", "card_path", "check_batch_prediction_drift", "check_pipeline_drift",
    "checked_location",
    "commit_scoring", "describe_alias_move", "estimate_batch_performance", "evaluate_version", "mark_announced",
    "model_card", "monitor_performance", "pin_model", "plan_scoring", "plan_tuning", "promote_version", "record_approval_decision",
    "rollback_alias", "run_tuning_batch", "score_planned_chunk", "split_training_data", "stored_test_predictions",
    "train_and_register", "validate_data", "window_timedelta", "write_model_card",
]
