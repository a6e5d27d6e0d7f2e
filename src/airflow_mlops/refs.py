"""The small JSON records that travel between tasks through XCom.

XCom carries only JSON in Airflow 3, so data and models stay in the artifact
store and tasks pass these references. Each has `to_dict` / `from_dict` (and
`to_json` / `from_json`) so a record survives the round trip unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GatePolicy = Literal["fail", "skip", "warn"]


class Record(BaseModel):
    """Base of every typed value that crosses a task boundary (XCom, plan files): validated on the way
    in, JSON on the way out, unknown fields refused."""

    model_config = ConfigDict(extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]):  # returns cls
        return cls.model_validate(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):  # returns cls
        return cls.model_validate_json(text)


class Ref(Record):
    """A Record that never changes once made: what a task hands to the next."""

    model_config = ConfigDict(frozen=True)


class ArtifactRef(Ref):
    """One object in the artifact store, with the sha256 of its bytes."""

    uri: str
    sha256: str
    size: int


class DatasetRef(Ref):
    """A dataset (a file or a folder of parts) and its content fingerprint."""

    uri: str
    fingerprint: str
    rows: int
    columns: list[str]


class ModelRef(Ref):
    """A registered model version."""

    name: str
    version: int


class GateResult(Ref):
    """The outcome of one gate: validation, evaluation or drift.

    `failures` holds one sentence per failed check, naming the column or metric,
    the observed value and what was allowed. `report` points at the HTML report.
    """

    gate: str
    passed: bool
    policy: GatePolicy = "fail"
    summary: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)
    report: ArtifactRef | None = None
