"""What every airflow-mlops operator shares: the pipeline, the store, the registry, gates."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlops.refs import GateResult
from airflow_mlops.storage.keys import safe_key

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.config import PipelineConfig
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.steps.results import StepResult
    from airflow_mlops.storage import ArtifactStore

log = logging.getLogger(__name__)
MAX_FAILURES_IN_ERROR = 5  # failed checks named in a gate's exception; the log and the report have all


@dataclass(frozen=True)
class RunInfo:
    """Who and what is running: recorded as lineage on every version and alias change."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    actor: str

    @classmethod
    def from_context(cls, context: Context) -> RunInfo:
        dag_run = context["dag_run"]
        ti = context["ti"]
        return cls(
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            task_id=ti.task_id,
            map_index=getattr(ti, "map_index", -1) if getattr(ti, "map_index", -1) is not None else -1,
            actor=run_actor(dag_run.dag_id, dag_run.run_type, getattr(dag_run, "triggering_user_name", None)),
        )


def run_actor(dag_id: str, run_type: Any, user: str | None) -> str:
    """Who a run acts for, in words: the user who started it, else what started it."""
    kind = str(getattr(run_type, "value", run_type))
    if kind == "backfill":
        return f"backfill by {user}" if user else f"backfill ({dag_id})"
    if user:
        return user
    return {
        "scheduled": f"schedule ({dag_id})",
        "asset_triggered": f"asset event ({dag_id})",
        "asset_materialization": f"asset materialization ({dag_id})",
        "operator_triggered": f"another DAG ({dag_id})",
        "manual": f"manual run ({dag_id})",
    }.get(kind, f"{kind.replace('_', ' ')} ({dag_id})")


def run_prefix(pipeline: str, run_id: str, task_id: str) -> str:
    """Deterministic per run and task, so a retry overwrites instead of duplicating."""
    return f"pipelines/{safe_key(pipeline, 'pipeline')}/runs/{safe_key(run_id)}/{safe_key(task_id, 'task id')}"


class MlopsBaseOperator(BaseOperator):
    """Base of the airflow-mlops operators.

    :param config: the pipeline file's content as a dict (validated again on the worker).
    :param mlops_registry_conn_id: connection of the model registry (embedded SQLite when absent).
    :param aws_conn_id: Amazon connection used when the artifact root is on S3.
    :param artifact_root: overrides `AIRFLOW_MLOPS_HOME` as the artifact root.
    """

    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        config: dict[str, Any],
        mlops_registry_conn_id: str = "mlops_registry",
        aws_conn_id: str | None = "aws_default",
        artifact_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.mlops_registry_conn_id = mlops_registry_conn_id
        self.aws_conn_id = aws_conn_id
        self.artifact_root = artifact_root

    @cached_property
    def pipeline(self) -> PipelineConfig:
        from airflow_mlops.config import parse_pipeline_config

        return parse_pipeline_config(self.config, source=f"{self.dag_id} config")

    @cached_property
    def store(self) -> ArtifactStore:
        from airflow_mlops.hooks.store import ArtifactStoreHook

        return ArtifactStoreHook(artifact_root=self.artifact_root, aws_conn_id=self.aws_conn_id).get_conn()

    @cached_property
    def registry(self) -> ModelRegistry:
        from airflow_mlops.hooks.registry import MlopsRegistryHook

        return MlopsRegistryHook(self.mlops_registry_conn_id).get_conn()

    def finish(self, result: StepResult, context: Context) -> Any:
        """End a task the same way whatever its step: keep the lineage for OpenLineage, persist the Model
        version link's target, apply the gate (a blocking gate's policy, or a watch gate's alert), and
        return the result's XCom value."""
        from airflow_mlops.operators.links import ModelVersionLink

        lineage = result.lineage
        self._lineage = (lineage.model_copy(update={
            "inputs": [self.store.uri(u) for u in lineage.inputs if u],
            "outputs": [self.store.uri(u) for u in lineage.outputs if u],
        }), result.gate)
        if result.version_link is not None:
            ModelVersionLink.persist(context, result.version_link.to_dict())
        gate = result.gate
        if gate is not None and result.watch is None:
            self.apply_gate(gate, context)
        elif gate is not None:
            self.publish_gate(gate, context)
            self.log.info("%s check: %s", gate.gate, gate.summary)  # said also when all is well
            if not gate.passed:
                self.raise_or_alert(gate, result.watch.event, context, fail=result.watch.fail,
                                    headline=result.watch.headline)
        return result.xcom()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The openlineage provider's hook: the datasets and ML facets this task recorded (None: nothing)."""
        recorded = getattr(self, "_lineage", None)
        if recorded is None:
            return None
        from airflow_mlops.operators.lineage import operator_lineage

        return operator_lineage(*recorded)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """A failed gate has lineage too: the data it checked and its verdict."""
        return self.get_openlineage_facets_on_complete(task_instance)

    def run_prefix(self, context: Context) -> str:
        info = RunInfo.from_context(context)
        suffix = f"/{info.map_index}" if info.map_index >= 0 else ""
        return run_prefix(self.pipeline.pipeline, info.run_id, info.task_id) + suffix

    def publish_gate(self, result: GateResult, context: Context) -> None:
        """Persist the report for the Report link and push the gate to XCom (key `gate`)."""
        from airflow_mlops.operators.links import ReportLink

        ReportLink.persist_report(context, result.report)
        context["ti"].xcom_push(key="gate", value=result.to_dict())

    def raise_or_alert(
        self, result: GateResult, event: str, context: Context, *, fail: bool, headline: str | None = None
    ) -> None:
        """A watch gate (drift, degradation) found a problem: alert as `event`, then fail the task when `fail`."""
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_mlops.operators.alerts import notify

        notify(self.pipeline, event, result.summary + "\n" + "\n".join(result.failures), context)
        if fail:
            raise AirflowFailException(f"{headline or result.gate}: {result.summary}")

    def apply_gate(self, result: GateResult, context: Context) -> None:
        """Persist the report for the Report link, push the gate to XCom (key `gate`), then apply the
        gate's policy: fail (no retry), skip downstream, or warn and go on."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        self.publish_gate(result, context)
        for line in result.failures:
            self.log.warning("%s gate: %s", result.gate, line)
        if result.passed:
            self.log.info("%s gate passed: %s", result.gate, result.summary)
            return
        message = f"{result.gate} gate failed ({result.policy}): {result.summary}"
        from airflow_mlops.operators.alerts import notify

        notify(self.pipeline, "gate_failed", message + "\n" + "\n".join(result.failures), context)
        # The exception is what the UI shows first: it names what failed, not only how many.
        shown = result.failures[:MAX_FAILURES_IN_ERROR]
        more = len(result.failures) - len(shown)
        detail = "; ".join(shown) + (f"; and {more} more (see the log and the report)" if more else "")
        failure = f"{message}: {detail}" if detail else message
        if result.policy == "fail":
            raise AirflowFailException(failure)
        if result.policy == "skip":
            raise AirflowSkipException(failure)
        self.log.warning("%s; continuing because the policy is 'warn'", message)
