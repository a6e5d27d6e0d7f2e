"""Thin Airflow operators over the airflow-mlops modules: read the context, call one step, return a ref."""

from airflow_mlops.operators.announce import AnnounceAliasMovesOperator
from airflow_mlops.operators.drift import DriftCheckOperator
from airflow_mlops.operators.evaluate import EvaluateModelOperator
from airflow_mlops.operators.inference import (
    CommitBatchOperator,
    PinModelOperator,
    PlanBatchOperator,
    ScoreChunkOperator,
)
from airflow_mlops.operators.monitor import (
    EstimatePerformanceOperator,
    MonitorPerformanceOperator,
    PredictionDriftOperator,
)
from airflow_mlops.operators.promote import PromoteModelOperator, RollbackModelOperator
from airflow_mlops.operators.train import TrainModelOperator
from airflow_mlops.operators.tune import PlanTuningOperator, TuneTrialsOperator
from airflow_mlops.operators.validate import ValidateDataOperator

__all__ = [
    "AnnounceAliasMovesOperator",
    "CommitBatchOperator",
    "DriftCheckOperator",
    "EstimatePerformanceOperator",
    "EvaluateModelOperator",
    "MonitorPerformanceOperator",
    "PinModelOperator",
    "PlanBatchOperator",
    "PlanTuningOperator",
    "PredictionDriftOperator",
    "PromoteModelOperator",
    "RollbackModelOperator",
    "ScoreChunkOperator",
    "TrainModelOperator",
    "TuneTrialsOperator",
    "ValidateDataOperator",
]
