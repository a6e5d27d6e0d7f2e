"""Validation: the pipeline's expectations on training or scoring data."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow_mlops.steps.results import Lineage, Validated

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)


def validate_data(
    config: PipelineConfig,
    store: ArtifactStore,
    *,
    data_uri: str,
    report_path: str,
    for_scoring: bool = False,
    max_rows: int | None = None,
) -> Validated:
    """Run the pipeline's expectations on `data_uri`; for scoring data, without the target's checks."""
    from airflow_mlops.data import dataset_ref
    from airflow_mlops.validation import scoring_checks, validate_dataset

    checks = config.validation
    lineage = Lineage(inputs=[data_uri])
    if for_scoring:
        if not checks.before_scoring:
            log.info("validation.before_scoring is false: %s is not checked", data_uri)
            return Validated(dataset=dataset_ref(data_uri, store), lineage=lineage)
        checks = scoring_checks(checks, config.data.target)
    gate = validate_dataset(data_uri, checks, store, report_path=report_path, max_rows=max_rows)
    goes_on = gate.passed or gate.policy == "warn"
    return Validated(dataset=dataset_ref(data_uri, store) if goes_on else None, gate=gate, lineage=lineage)
