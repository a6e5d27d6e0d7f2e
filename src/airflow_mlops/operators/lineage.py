"""OpenLineage for our tasks: datasets in and out named by their store URIs, and ML facets.

The OpenLineage spec has no facets for models yet, so ours are custom run facets under the `mlops_`
prefix (documented with their JSON fields in docs/lineage.md):

- `mlops_modelVersion`: the registry version a task trained, evaluated, promoted or scored with;
- `mlops_metrics`: metric values and the split (or batch) they were measured on;
- `mlops_gate`: a gate's verdict (validation, evaluation, drift, degradation);
- `mlops_alias`: an alias move (alias, from and to version).

A task records what it read and wrote while it runs (`MlopsBaseOperator.record_lineage`); the
openlineage provider asks for it after `execute`, in a forked process, so building the facets does
no I/O. Heavy imports stay inside the functions: only the provider calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FACET_PREFIX = "mlops"
# A URN, not a web address: the package has no hosted schema site; docs/lineage.md holds the schemas.
SCHEMA_URL = "urn:airflow-mlops:openlineage:facets:1-0-0:{anchor}"


@dataclass
class TaskLineage:
    """What one task read and wrote (store URIs) and what it decided."""

    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    model: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    metrics_split: str | None = None
    gate: dict[str, Any] | None = None
    alias: dict[str, Any] | None = None


def model_facts(record: Any) -> dict[str, Any]:
    """The `mlops_modelVersion` fields of a registry ModelVersion."""
    return {"name": record.name, "version": int(record.version), "flavor": record.flavor, "task": record.task,
            "artifactUri": record.artifact_uri, "artifactSha256": record.artifact_sha256}


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of a store URI after OpenLineage's naming conventions: `s3://bucket` and
    the key for S3, `file` and the absolute path for a local file or folder."""
    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return f"s3://{bucket}", key.rstrip("/") or "/"
    path = uri.removeprefix("file://")
    return "file", path.rstrip("/") or "/"


def _facet_classes() -> dict[str, type]:
    import attr
    from openlineage.client.facet_v2 import RunFacet

    def schema(anchor: str) -> Any:
        return staticmethod(lambda: SCHEMA_URL.format(anchor=anchor))

    @attr.define
    class MlopsModelVersionRunFacet(RunFacet):
        name: str
        version: int
        flavor: str | None = None
        task: str | None = None
        artifactUri: str | None = None  # OpenLineage fields are camelCase
        artifactSha256: str | None = None
        _get_schema = schema("MlopsModelVersionRunFacet")

    @attr.define
    class MlopsMetricsRunFacet(RunFacet):
        metrics: dict[str, Any]
        split: str | None = None
        _get_schema = schema("MlopsMetricsRunFacet")

    @attr.define
    class MlopsGateRunFacet(RunFacet):
        gate: str
        passed: bool
        policy: str | None = None
        summary: str | None = None
        failures: list[str] = attr.field(factory=list)
        _get_schema = schema("MlopsGateRunFacet")

    @attr.define
    class MlopsAliasRunFacet(RunFacet):
        alias: str
        toVersion: int
        fromVersion: int | None = None
        _get_schema = schema("MlopsAliasRunFacet")

    return {"modelVersion": MlopsModelVersionRunFacet, "metrics": MlopsMetricsRunFacet,
            "gate": MlopsGateRunFacet, "alias": MlopsAliasRunFacet}


def operator_lineage(lineage: TaskLineage) -> Any:
    """The provider's OperatorLineage for `lineage`."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    facets = _facet_classes()
    run_facets: dict[str, Any] = {}
    if lineage.model:
        run_facets[f"{FACET_PREFIX}_modelVersion"] = facets["modelVersion"](**lineage.model)
    if lineage.metrics:
        numbers = {k: v for k, v in lineage.metrics.items() if isinstance(v, (int, float)) or v is None}
        run_facets[f"{FACET_PREFIX}_metrics"] = facets["metrics"](metrics=numbers, split=lineage.metrics_split)
    if lineage.gate:
        gate = lineage.gate
        run_facets[f"{FACET_PREFIX}_gate"] = facets["gate"](
            gate=str(gate.get("gate")), passed=bool(gate.get("passed")), policy=gate.get("policy"),
            summary=gate.get("summary"), failures=[str(f) for f in gate.get("failures") or []])
    if lineage.alias:
        run_facets[f"{FACET_PREFIX}_alias"] = facets["alias"](**lineage.alias)

    def datasets(uris: list[str]) -> list[Any]:
        return [Dataset(namespace=namespace, name=name)
                for namespace, name in dict.fromkeys(dataset_name(uri) for uri in uris if uri)]

    return OperatorLineage(inputs=datasets(lineage.inputs), outputs=datasets(lineage.outputs), run_facets=run_facets)
