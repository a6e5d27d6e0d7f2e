"""Batch inference as Airflow tasks: pin the model, plan chunks, score each (mapped), commit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MlopsBaseOperator, RunInfo

if TYPE_CHECKING:
    from airflow.sdk import Context


class PinModelOperator(MlopsBaseOperator):
    """Resolve the alias (or take an explicit version) ONCE for the whole run.

    :param alias: templated; default `inference.alias`.
    :param version: templated; when set, wins over the alias.

    .. seealso::
        docs/batch-inference.md and docs/operators.md
    """

    template_fields = ("alias", "version")

    def __init__(self, *, alias: str | None = None, version: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alias = alias
        self.version = version

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import pin_model

        version = int(self.version) if self.version not in (None, "", "None") else None
        pinned = pin_model(self.pipeline, self.registry, alias=self.alias or self.pipeline.inference.alias,
                           version=version)
        return self.finish(pinned, context)


class PlanBatchOperator(MlopsBaseOperator):
    """Cut the input into at most 1024 chunks for the pinned version.

    Returns one small descriptor per chunk, which `ScoreChunkOperator` maps over.

    .. seealso::
        docs/batch-inference.md and docs/operators.md
    """

    template_fields = ("pinned", "input_uri")

    def __init__(self, *, pinned: Any, input_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pinned = pinned
        self.input_uri = input_uri

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_mlops.steps import plan_scoring

        info = RunInfo.from_context(context)
        planned = plan_scoring(
            self.pipeline,
            self.store,
            self.registry,
            pinned=self.pinned,
            run_id=info.run_id,
            input_uri=self.input_uri or self.pipeline.inference.input,
            plan_path=f"{self.run_prefix(context)}/plan.json",
        )
        return self.finish(planned, context)


class ScoreChunkOperator(MlopsBaseOperator):
    """Score one chunk of the plan (mapped with `.expand(chunk=plan.output)`).

    .. seealso::
        docs/batch-inference.md and docs/operators.md
    """

    template_fields = ("chunk",)

    def __init__(self, *, chunk: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chunk = chunk

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.utils.net import get_hostname

        from airflow_mlops.steps import score_planned_chunk

        # Airflow's own name for this host (core.hostname_callable), as in the task instance's record.
        scored = score_planned_chunk(self.pipeline, self.store, chunk=self.chunk,
                                     validation_prefix=self.run_prefix(context), worker=get_hostname())
        return self.finish(scored, context)


class CommitBatchOperator(MlopsBaseOperator):
    """Write the manifest last, after checking every chunk is there with its planned rows; record the
    scoring run in the registry (the monitor joins labels against it).

    Returns `{"uri": manifest, "sha256", "rows", "name", "version", "run_id", "output_prefix"}`.

    .. seealso::
        docs/batch-inference.md and docs/operators.md
    """

    template_fields = ("results",)

    def __init__(self, *, results: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.steps import commit_scoring

        info = RunInfo.from_context(context)
        committed = commit_scoring(
            self.store, self.registry, results=list(self.results), dag_id=info.dag_id, run_id=info.run_id
        )
        return self.finish(committed, context)
