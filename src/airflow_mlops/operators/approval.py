"""PromotionApprovalOperator: Airflow's HITL approval, asked when the run or a protected alias requires it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from airflow_mlops.operators.base import MlopsBaseOperator, RunInfo

if TYPE_CHECKING:
    from airflow.sdk import Context

COMMENT = "comment"


class PromotionApprovalOperator(MlopsBaseOperator, ApprovalOperator):
    """Ask a person to approve the promotion when `approval` renders to `required`, or always when
    `promotion.alias` is in `promotion.protected`.

    With `none` (and an unprotected alias) the task approves at once, so one DAG shape serves both
    settings and the Trigger form can switch approval per run. The person's decision, comment and
    time go to the alias history: an approval on the row of the move it allows, a rejection
    ("Reject" skips the promotion) or a timeout as a row of its own. With
    `promotion.approver_must_differ`, an approval by the user who started the run is refused,
    recorded, and the request is asked again for someone else.

    :param approval: `none` or `required` (templated; the retrain DAG passes the Trigger form's value).
    :param evaluated: the evaluate task's result (templated): the version waiting for approval.
    :param body: leave it out to show the evaluation: the gate's summary and failures, the slices and
        fairness results in words, and a link to the version page (`steps.approval_body`).

    .. seealso::
        docs/governance.md and docs/operators.md
    """

    template_fields = (*ApprovalOperator.template_fields, "approval", "evaluated")

    def __init__(self, *, approval: Any = "none", evaluated: Any = None, **kwargs: Any) -> None:
        from airflow.sdk import Param

        kwargs.setdefault("params", {COMMENT: Param("", type="string", description="why; kept in the alias history")})
        super().__init__(**kwargs)
        self.approval = approval
        self.evaluated = evaluated

    def execute(self, context: Context) -> Any:
        if not self.pipeline.promotion.approval_required(str(self.approval)):
            self.log.info("approval is %r for this run: promoting without asking", self.approval)
            return {"chosen_options": [self.APPROVE], "params_input": {}, "responded_by_user": None}
        if self.approval != "required":
            self.log.info("'%s' is protected (promotion.protected): asking for approval", self.pipeline.promotion.alias)
        self.body = self._body()
        return super().execute(context)

    def _body(self) -> str:
        """What the person reads: the DAG's `body` if it gave one, else the evaluation in words with its links."""
        from airflow_mlops.steps import approval_body

        return self.body or approval_body(self.registry, evaluated=self.evaluated or {})

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from airflow.sdk.exceptions import TaskAwaitingInput
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        from airflow_mlops.governance import approval_refusal

        if event.get("error_type") == "timeout":
            hours = self.pipeline.promotion.approval_timeout_hours
            self._record("approval_timeout", None, f"nobody answered the approval request within {hours:g} h", context)
            return super().execute_complete(context, event)
        approver = (event.get("responded_by_user") or {}).get("name")
        started_by = getattr(context["dag_run"], "triggering_user_name", None)
        refusal = approval_refusal(self.pipeline, approver=approver, started_by=started_by)
        if refusal and self.APPROVE in (event.get("chosen_options") or []):
            self._record("approval_refused", event, refusal, context)
            self.log.warning("%s; asking again", refusal)
            # Airflow keeps the request as it was and clears the refused response: it is open again.
            upsert_hitl_detail(
                ti_id=context["task_instance"].id, options=self.options, subject=self.subject, body=self._body(),
                defaults=self.defaults, multiple=self.multiple, params=self.serialized_params,
                assigned_users=self.assigned_users,
            )
            raise TaskAwaitingInput(method_name="execute_complete", timeout=self.response_timeout)
        result = super().execute_complete(context, event)
        if self.REJECT in result["chosen_options"]:
            self._record("rejected", event, f"{approver or 'a person'} rejected the promotion", context)
        return result

    def _record(self, kind: str, event: dict[str, Any] | None, reason: str, context: Context) -> None:
        """Append the decision to the alias history (it moves nothing)."""
        from airflow_mlops.steps import record_approval_decision

        info = RunInfo.from_context(context)
        record_approval_decision(
            self.pipeline, self.registry, evaluated=self.evaluated or {}, kind=kind, reason=reason,
            approval=approval_from_result(event) if event is not None else None,
            actor=info.actor, dag_id=info.dag_id, run_id=info.run_id,
        )


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        return _as_datetime(datetime.fromisoformat(value))
    return datetime.now(timezone.utc)


def approval_from_result(result: dict[str, Any] | None) -> Any:
    """The `Approval` a person gave in the approve task's result, or None when nobody was asked."""
    from airflow_mlops.registry import Approval

    if not result or not result.get("responded_by_user"):
        return None  # approved at once (no approval asked), or a timeout default
    return Approval(
        approver=result["responded_by_user"].get("name") or "unknown",
        comment=(result.get("params_input") or {}).get(COMMENT) or None,
        at=_as_datetime(result.get("responded_at")),
    )
