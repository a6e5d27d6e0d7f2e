"""What each step hands back to its caller: a typed result.

`xcom()` is the JSON the Airflow task returns (and the next task reads). Beside it, kept out of XCom,
a result carries what the operator base class needs to finish any task the same way: the lineage
(what was read and written, the model and metrics concerned), the gate to apply, and for a watch gate
(drift, degradation) the alert to send when it finds a problem.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from airflow_mlops.inference.score import ChunkResult
from airflow_mlops.refs import DatasetRef, GateResult, ModelRef, Record
from airflow_mlops.tuning.study import BatchOutcome


def model_facts(record: Any) -> dict[str, Any]:
    """The lineage fields of a registry ModelVersion (the `mlops_modelVersion` facet)."""
    return {"name": record.name, "version": int(record.version), "flavor": record.flavor, "task": record.task,
            "artifactUri": record.artifact_uri, "artifactSha256": record.artifact_sha256}


class Lineage(Record):
    """What a step read and wrote (store paths or URIs), and the model, metrics and alias move it concerns."""

    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    model: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    metrics_split: str | None = None
    alias: dict[str, Any] | None = None


class Watch(Record):
    """A watch gate: when it does not pass, alert as `event` and fail the task when `fail`."""

    event: Literal["drift", "degradation"]
    headline: str
    fail: bool


class StepResult(Record):
    """Base of the step results. `gate` (when the step has one) goes to XCom with the result."""

    gate: GateResult | None = None
    lineage: Lineage = Field(default_factory=Lineage, exclude=True)
    watch: Watch | None = Field(default=None, exclude=True)

    @property
    def version_link(self) -> ModelRef | None:
        """The version the task's Model version link opens (None: no link)."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON; a step without a gate says nothing of one."""
        return self.model_dump(mode="json", exclude={"gate"} if self.gate is None else None)

    def xcom(self) -> Any:
        """What the task returns."""
        return self.to_dict()


class Validated(StepResult):
    """The checked dataset (None when the gate stops the run: fingerprinting it would be wasted); `gate`
    None when scoring data is not checked (validation.before_scoring false)."""

    dataset: DatasetRef | None = None

    def xcom(self) -> Any:
        return self.dataset.to_dict() if self.dataset else None


class Trained(StepResult):
    """The registered version and the splits it was trained, validated and tested on."""

    model: ModelRef
    datasets: dict[str, Any]

    @property
    def version_link(self) -> ModelRef | None:
        return self.model


class TuningPlanned(StepResult):
    """The run's study, the split every trial uses, and one batch of trial slots per mapped task."""

    study: str
    datasets: dict[str, Any]
    batches: list[dict[str, Any]]

    def xcom(self) -> Any:
        return self.batches


class TrialsRun(StepResult, BatchOutcome):
    """What one mapped trial task did with its slots."""


class Evaluated(StepResult):
    """The evaluated version and the champion it was compared with (what promotion compares-and-sets)."""

    model: ModelRef
    champion_version: int | None
    gate: GateResult


class AliasMoved(StepResult):
    """An alias now at `model` (a promotion or rollback); `previous_version` None when nothing moved."""

    model: ModelRef
    alias: str
    previous_version: int | None

    @property
    def version_link(self) -> ModelRef | None:
        return self.model


class DriftChecked(StepResult):
    """Recent data against the reference (the champion's training data by default)."""

    drifted: bool
    drifted_columns: list[str]
    reference: str
    current: str
    model: ModelRef | None
    gate: GateResult
    run_id: str | None


class Pinned(StepResult):
    """The version a batch-inference run scores with, resolved once (`alias` None: an explicit version)."""

    name: str
    version: int
    alias: str | None


class ChunkTask(Record):
    """One mapped scoring task's input: the stored plan (verified by sha256) and the chunk's index."""

    plan_uri: str
    plan_sha256: str
    index: int


class ScoringPlanned(StepResult):
    chunks: list[ChunkTask]

    def xcom(self) -> Any:
        return [chunk.to_dict() for chunk in self.chunks]


class ChunkScored(StepResult, ChunkResult):
    """One scored chunk and the plan it belongs to."""

    plan_uri: str
    plan_sha256: str


class Committed(StepResult):
    """The batch's manifest, written last, and the scoring run recorded in the registry."""

    uri: str
    sha256: str
    rows: int
    name: str
    version: int
    run_id: str
    output_prefix: str


class Monitored(StepResult):
    """The degradation gate on the champion and one realized performance record per version."""

    gate: GateResult
    degraded: bool
    version: int | None
    summary: str
    records: list[dict[str, Any]] = Field(default_factory=list)


class Estimated(StepResult):
    """Estimated performance of one batch run (`record` None when nothing could be estimated)."""

    estimated: bool
    summary: str
    record: dict[str, Any] | None = None


class PredictionDriftChecked(StepResult):
    """A batch's predictions against the version's test predictions (`gate` None: not checked)."""

    checked: bool
    drifted: bool
    summary: str
    drifted_columns: list[str] = Field(default_factory=list)
