"""OpenLineage for our tasks: datasets in and out named by their store URIs, and ML facets.

The OpenLineage spec has no facets for models yet, so ours are custom run facets under the `mlops_`
prefix (documented with their JSON fields in docs/lineage.md):

- `mlops_modelVersion`: the registry version a task trained, evaluated, promoted or scored with;
- `mlops_metrics`: metric values and the split (or batch) they were measured on;
- `mlops_gate`: a gate's verdict (validation, evaluation, drift, degradation);
- `mlops_alias`: an alias move (alias, from and to version).

A step returns what its task read and wrote (`steps.results.Lineage`), kept by `MlopsBaseOperator.finish`; the
openlineage provider asks for it after `execute`, in a forked process, so building the facets does
no I/O. Heavy imports stay inside the functions: only the provider calls them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_mlops.refs import GateResult
    from airflow_mlops.steps.results import Lineage

FACET_PREFIX = "mlops"
# A URN, not a web address: the package has no hosted schema site; docs/lineage.md holds the schemas.
SCHEMA_URL = "urn:airflow-mlops:openlineage:facets:1-0-0:{anchor}"


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


def operator_lineage(lineage: Lineage, gate: GateResult | None) -> Any:
    """The provider's OperatorLineage for `lineage` and the task's `gate`."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    facets = _facet_classes()
    run_facets: dict[str, Any] = {}
    if lineage.model:
        run_facets[f"{FACET_PREFIX}_modelVersion"] = facets["modelVersion"](**lineage.model)
    if lineage.metrics:
        numbers = {k: v for k, v in lineage.metrics.items() if isinstance(v, (int, float)) or v is None}
        run_facets[f"{FACET_PREFIX}_metrics"] = facets["metrics"](metrics=numbers, split=lineage.metrics_split)
    if gate is not None:
        run_facets[f"{FACET_PREFIX}_gate"] = facets["gate"](
            gate=gate.gate, passed=gate.passed, policy=gate.policy, summary=gate.summary, failures=list(gate.failures))
    if lineage.alias:
        run_facets[f"{FACET_PREFIX}_alias"] = facets["alias"](**lineage.alias)

    def datasets(uris: list[str]) -> list[Any]:
        return [Dataset(namespace=namespace, name=name)
                for namespace, name in dict.fromkeys(dataset_name(uri) for uri in uris if uri)]

    return OperatorLineage(inputs=datasets(lineage.inputs), outputs=datasets(lineage.outputs), run_facets=run_facets)
