"""PromoteModelOperator and RollbackModelOperator: move an alias, with who and why."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MlopsBaseOperator, RunInfo
from airflow_mlops.operators.links import ModelVersionLink

if TYPE_CHECKING:
    from airflow.sdk import Context


@contextmanager
def refused_without_retry() -> Iterator[None]:
    """A move the governance rules refuse fails the task at once: a retry would be refused the same way."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.errors import ForbiddenMoveError

    try:
        yield
    except ForbiddenMoveError as exc:
        raise AirflowFailException(str(exc)) from exc


class PromoteModelOperator(MlopsBaseOperator):
    """Point `promotion.alias` at the evaluated version.

    The move is a compare-and-set against the champion the evaluation compared
    with, so a concurrent promotion makes this task fail instead of silently
    overwriting it. A retry after a successful move is a no-op.

    The alias history, not this task, is what announces the move: the champion Asset's
    watcher turns the new history row into the Asset event that starts batch inference.

    :param evaluated: the evaluate task's result (templated; pass `evaluate.output`).
    :param approved: the approve task's result (templated; pass `approve.output`): who approved,
        with their comment, goes on the history row of the move.
    :param dry_run: train and evaluate only; skip the promotion (templated).
    :param reason: recorded in the alias history (templated).

    .. seealso::
        docs/registry.md and docs/operators.md
    """

    template_fields = ("evaluated", "approved", "dry_run", "reason")
    operator_extra_links = (ModelVersionLink(),)

    def __init__(self, *, evaluated: Any, approved: Any = None, dry_run: Any = False, reason: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.evaluated = evaluated
        self.approved = approved
        self.dry_run = dry_run
        self.reason = reason

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.operators.approval import approval_from_result
        from airflow_mlops.steps import promote_version

        if str(self.dry_run).lower() in {"true", "1"}:
            raise AirflowSkipException("dry run: the model was trained and evaluated but not promoted")
        info = RunInfo.from_context(context)
        with refused_without_retry():
            moved = promote_version(
                self.pipeline,
                self.registry,
                evaluated=self.evaluated,
                actor=info.actor,
                reason=self.reason or f"passed evaluation in {info.dag_id} run {info.run_id}",
                dag_id=info.dag_id,
                run_id=info.run_id,
                approval=approval_from_result(self.approved),
                store=self.store,
            )
        return self.finish(moved, context)


class RollbackModelOperator(MlopsBaseOperator):
    """Move `alias` back to the version it pointed at before its last change.

    :param reason: required; recorded in the alias history (templated).
    :param alias: default `promotion.alias` (templated).

    .. seealso::
        docs/governance.md and docs/operators.md
    """

    template_fields = ("reason", "alias")
    operator_extra_links = (ModelVersionLink(),)

    def __init__(self, *, reason: str, alias: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason
        self.alias = alias

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_mlops.steps import rollback_alias

        if not (self.reason or "").strip():
            raise AirflowFailException("a rollback needs a reason; it is recorded in the alias history")
        info = RunInfo.from_context(context)
        with refused_without_retry():
            moved = rollback_alias(
                self.pipeline,
                self.registry,
                alias=self.alias or self.pipeline.promotion.alias,
                actor=info.actor,
                reason=self.reason,
                dag_id=info.dag_id,
                run_id=info.run_id,
                store=self.store,
            )
        return self.finish(moved, context)
