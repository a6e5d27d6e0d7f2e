"""Who may move an alias, and whose approval counts (plain Python; the UI, API and DAGs ask here)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from airflow_mlops.errors import ForbiddenMoveError
from airflow_mlops.settings import dag_id

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig


def check_direct_move(config: PipelineConfig | None, alias: str, *, user: str, roles: Iterable[str]) -> None:
    """Refuse a direct move (registry pages, plugin API) of a protected alias by someone who is not an alias admin.

    A model without a pipeline file has no protected aliases.
    """
    if config is None or not config.promotion.is_protected(alias):
        return
    admins = config.promotion.alias_admins
    held = sorted({role.lower() for role in roles})
    if user in admins.users or set(held) & {role.lower() for role in admins.roles}:
        return
    allowed = ", ".join([*(f"role {r}" for r in admins.roles), *(f"user {u}" for u in admins.users)]) or "nobody"
    raise ForbiddenMoveError(
        f"{config.pipeline} '{alias}' is protected (promotion.protected): it moves only through an approved "
        f"promotion in {dag_id(config.pipeline, 'retrain')}, or directly by {allowed} (promotion.alias_admins); "
        f"{user} has {'roles ' + ', '.join(held) if held else 'no role'}"
    )


def check_rollback_run(config: PipelineConfig, alias: str, *, started_by: str | None) -> None:
    """Refuse a `<pipeline>__rollback` run that would move a protected alias for someone who is not
    named in `alias_admins.users` (task code cannot ask Airflow's auth manager for a user's roles:
    admins by role roll back from the registry page)."""
    if not config.promotion.is_protected(alias) or (started_by and started_by in config.promotion.alias_admins.users):
        return
    raise ForbiddenMoveError(
        f"{config.pipeline} '{alias}' is protected (promotion.protected): the rollback DAG moves it only for the "
        f"users in promotion.alias_admins.users, and {started_by or 'a run without a triggering user'} is not one; "
        "an alias admin can roll it back from the registry page"
    )


def approval_refusal(config: PipelineConfig, *, approver: str | None, started_by: str | None) -> str | None:
    """Why `approver`'s approval does not count (separation of duties), or None when it does."""
    if config.promotion.approver_must_differ and approver and started_by and approver == started_by:
        return (f"{approver} started this run and may not approve its promotion "
                "(promotion.approver_must_differ); another person must approve")
    return None


def require_approval_for_protected(config: PipelineConfig, alias: str, approved_by: str | None) -> None:
    """A pipeline run may move a protected alias only with a person's approval."""
    if config.promotion.is_protected(alias) and not approved_by:
        raise ForbiddenMoveError(
            f"{config.pipeline} '{alias}' is protected (promotion.protected): a promotion needs a person's "
            "approval, and this run has none"
        )
