"""PromotionApprovalOperator: Airflow's HITL approval, asked only when the run requires it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class PromotionApprovalOperator(ApprovalOperator):
    """Ask a person to approve the promotion when `approval` renders to `required`.

    With `none` the task approves at once, so one DAG shape serves both settings
    and the Trigger form can switch approval per run. "Reject" skips the promotion.
    """

    template_fields = (*ApprovalOperator.template_fields, "approval")

    def __init__(self, *, approval: Any = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.approval = approval

    def execute(self, context: Context) -> Any:
        if self.approval != "required":
            self.log.info("approval is %r for this run: promoting without asking", self.approval)
            return {"chosen_options": [self.APPROVE], "params_input": {}, "responded_by_user": None}
        return super().execute(context)
