"""What a failed gate tells the person looking at the failed task."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_failed_gate_names_what_failed_in_the_exception_the_ui_shows_first():
    """`21 of 22 expectations passed` alone does not say what to fix: the exception names the failures."""
    from types import SimpleNamespace

    import yaml
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.operators import ValidateDataOperator
    from airflow_mlops.refs import GateResult

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "dags/configs/breast_cancer.yaml").read_text())
    config["alerts"] = {"on": []}
    operator = ValidateDataOperator(task_id="validate", config=config)
    failures = [f"not_null(f{i}): {i} of 100 rows are null" for i in range(7)]
    result = GateResult(gate="validation", passed=False, summary="15 of 22 expectations passed", failures=failures)
    context = {"ti": SimpleNamespace(xcom_push=lambda key, value: None, task_id="validate", map_index=-1)}
    with pytest.raises(AirflowFailException) as raised:
        operator.apply_gate(result, context)
    message = str(raised.value)
    assert message.startswith("validation gate failed (fail): 15 of 22 expectations passed: not_null(f0): 0 of 100")
    assert "not_null(f4)" in message and "not_null(f5)" not in message and message.endswith("and 2 more (see the log and the report)")
