"""Monitoring after deployment: realized performance once labels arrive, estimated performance (CBPE)
before they do, and the degradation gate. Plain Python: no Airflow, no registry writes."""

from __future__ import annotations

from airflow_mlops.monitoring.estimate import EstimatedPerformance, estimate_performance
from airflow_mlops.monitoring.gate import degradation_gate
from airflow_mlops.monitoring.outputs import ScoredBatch
from airflow_mlops.monitoring.realized import RealizedPerformance, realized_performance

__all__ = [
    "EstimatedPerformance",
    "RealizedPerformance",
    "ScoredBatch",
    "degradation_gate",
    "estimate_performance",
    "realized_performance",
]
