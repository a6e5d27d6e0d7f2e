import json

import pytest
from pydantic import ValidationError

from airflow_mlops.refs import ArtifactRef, DatasetRef, GateResult, ModelRef

RECORDS = [
    ArtifactRef(uri="s3://bucket/models/m.ubj", sha256="ab" * 32, size=123),
    DatasetRef(uri="/data/train.parquet", fingerprint="cd" * 32, rows=569, columns=["mean radius", "target"]),
    ModelRef(name="breast_cancer", version=3),
    GateResult(
        gate="validation",
        passed=False,
        policy="skip",
        summary="1 of 5 expectations failed",
        metrics={"evaluated": 5, "nested": {"roc_auc": 0.93}},
        failures=["not_null(mean radius): 37 of 569 rows are null (6.5%), allowed 0%"],
        report=ArtifactRef(uri="/r/report.html", sha256="ef" * 32, size=10),
    ),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_records_survive_a_json_round_trip_like_xcom(record):
    # XCom stores plain JSON: dump to text, parse with the json module, rebuild.
    wire = json.loads(json.dumps(record.to_dict()))
    assert type(record).from_dict(wire) == record
    assert type(record).from_json(record.to_json()) == record


def test_gate_result_rejects_an_unknown_policy():
    with pytest.raises(ValidationError, match="policy"):
        GateResult(gate="drift", passed=True, policy="ignore")


def test_records_reject_unknown_fields_so_a_typo_is_not_lost():
    with pytest.raises(ValidationError, match="versoin"):
        ModelRef.from_dict({"name": "m", "version": 1, "versoin": 2})
