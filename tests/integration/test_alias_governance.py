"""Alias governance without a running Airflow: the history watcher's producer, approvals on the
history, decision rows, protected aliases and separation of duties, on SQLite and PostgreSQL.

The same watcher under a real triggerer and scheduler is tested in tests/e2e/test_alias_moves.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
from airflow.triggers.shared_stream import AdvanceItem, AdvanceOutcome

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.errors import ForbiddenMoveError, RegistryError
from airflow_mlops.governance import (
    approval_refusal,
    check_direct_move,
    require_approval_for_protected,
)
from airflow_mlops.registry import Approval, ModelRegistry
from airflow_mlops.steps import describe_alias_move, promote_version
from airflow_mlops.triggers.alias_history import AliasHistoryProducer, AliasMovedTrigger

SHA = "ab" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request, tmp_path, monkeypatch) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    ModelRegistry(url, upgrade=True)
    # The producer finds the registry through the Airflow connection, as in the triggerer.
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_REGISTRY", json.dumps({"conn_type": "mlops_registry", "extra": {"url": url}}))
    return url


@pytest.fixture
def registry(registry_url) -> ModelRegistry:
    return ModelRegistry(registry_url)


def register(registry: ModelRegistry, name: str, n: int) -> list[int]:
    return [
        registry.register_version(
            name, artifact_uri=f"s3://b/{name}/{i}", artifact_sha256=SHA, flavor="xgboost",
            task="binary_classification", params={}, metrics={"roc_auc": 0.9}, datasets={},
            dag_id="d", run_id=f"r{i}", task_id="train",
        ).version
        for i in range(n)
    ]


def config(**promotion):
    return parse_pipeline_config({
        "pipeline": "churn",
        "data": {"train": "t.parquet", "target": "y"},
        "model": {"flavor": "xgboost", "task": "binary_classification"},
        "promotion": promotion,
    })


def producer(stream: str = "churn.champion", aliases: list[str] | None = None) -> AliasHistoryProducer:
    return AliasMovedTrigger.create_shared_stream_producer(
        {"model": "churn", "stream": stream, "aliases": aliases, "registry_conn_id": "mlops_registry",
         "poll_interval": 0.05}
    )


async def take(stream, n: int) -> list:
    out = []
    async for item in stream:
        out.append(item)
        if len(out) == n:
            break
    return out


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


def acked(payload: int) -> AdvanceItem:
    return AdvanceItem(broker_payload=payload, outcome=AdvanceOutcome(acked=1, failed=0, rejected=0))


def test_the_watcher_hands_on_each_move_once_and_resumes_after_what_airflow_stored(registry):
    register(registry, "churn", 3)
    registry.set_alias("churn", "champion", 1, actor="alice", reason="first")
    # A watcher that starts for the first time announces recent moves (a promotion made while
    # Airflow was still registering the watcher is not lost).
    first = producer()
    [(move, event_id)] = run(take(first.open_stream(), 1))
    assert (move["model"], move["alias"], move["from_version"], move["to_version"], move["actor"]) == (
        "churn", "champion", None, 1, "alice")

    # Two moves in quick succession, and a move of another alias this watcher does not follow.
    registry.set_alias("churn", "champion", 2, actor="bob", reason="better")
    registry.set_alias("churn", "challenger", 3, actor="bob", reason="shadow")
    registry.set_alias("churn", "champion", 3, actor="carol", reason="best")
    only_champion = producer(aliases=["champion"])

    async def deliver_then_store():
        stream = only_champion.open_stream()
        moves = await take(stream, 3)
        # Airflow stored the first two events; the third failed to persist.
        await only_champion.advance([acked(moves[0][1]), acked(moves[1][1])])
        with pytest.raises(RuntimeError, match="did not store the event"):
            await only_champion.advance([
                AdvanceItem(broker_payload=moves[2][1], outcome=AdvanceOutcome(acked=0, failed=1, rejected=0))
            ])
        return moves

    moves = run(deliver_then_store())
    assert [(m["from_version"], m["to_version"]) for m, _ in moves] == [(None, 1), (1, 2), (2, 3)]
    # A restarted triggerer resumes after the last stored event: the failed one comes again, once.
    restarted = producer(aliases=["champion"])
    [(again, again_id)] = run(take(restarted.open_stream(), 1))
    assert (again["to_version"], again_id) == (3, moves[2][1])
    run(restarted.advance([acked(again_id)]))
    assert registry.alias_cursor("churn.champion") == again_id

    # A move while nothing watches (scheduler and triggerer down) is handed on after the restart.
    registry.rollback("churn", "champion", reason="bad", actor="dave")
    [(late, _)] = run(take(producer(aliases=["champion"]).open_stream(), 1))
    assert (late["kind"], late["from_version"], late["to_version"], late["actor"]) == ("rollback", 3, 2, "dave")


def test_a_watcher_new_to_an_existing_history_skips_old_moves(registry):
    register(registry, "churn", 2)
    old = registry.set_alias("churn", "champion", 1, actor="alice", reason="long ago")
    start = producer(stream="churn.aliases")
    with pytest.MonkeyPatch.context() as patch:
        # Pretend the watcher first starts an hour after that move.
        patch.setattr("airflow_mlops.registry.models.utcnow", lambda: datetime.now(timezone.utc) + timedelta(hours=1))
        registry_position = run(_start(start))
    assert registry_position == old.event_id
    registry.set_alias("churn", "champion", 2, actor="bob", reason="now")
    [(move, _)] = run(take(producer(stream="churn.aliases").open_stream(), 1))
    assert move["to_version"] == 2


async def _start(p: AliasHistoryProducer) -> int:
    from asgiref.sync import sync_to_async

    return await sync_to_async(p._start_position)()


def test_approvals_and_decisions_are_history_rows_and_decisions_move_nothing(registry):
    register(registry, "churn", 2)
    approved_at = datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)
    approval = Approval(approver="bob", comment="looks good", at=approved_at)
    promote_version(config(), registry, evaluated={"model": {"name": "churn", "version": 1}, "champion_version": None},
                    actor="alice", reason="passed", approval=approval)
    refused = registry.record_alias_decision(
        "churn", "champion", 2, kind="approval_refused", actor="alice", reason="alice started this run",
        approval=Approval(approver="alice", comment=None, at=approved_at),
    )
    registry.record_alias_decision("churn", "champion", 2, kind="approval_timeout", actor="schedule",
                                   reason="nobody answered")
    with pytest.raises(RegistryError, match="expected one of"):
        registry.record_alias_decision("churn", "champion", 2, kind="set", actor="x", reason="")
    history = registry.history("churn", "champion")
    assert [(e.kind, e.approver, e.approval_comment) for e in history] == [
        ("set", "bob", "looks good"), ("approval_refused", "alice", None), ("approval_timeout", None, None)]
    assert history[0].approved_at == approved_at
    assert (refused.from_version, refused.to_version, refused.is_move) == (1, 2, False)
    assert registry.aliases("churn") == {"champion": 1}
    # Decisions are not moves: the watcher skips them and a rollback looks past them.
    assert [e.kind for e in registry.alias_moves_after("churn", 0)] == ["set"]
    registry.set_alias("churn", "champion", 2, actor="carol", reason="manual")
    registry.record_alias_decision("churn", "champion", 1, kind="rejected", actor="x", reason="no")
    assert registry.rollback("churn", "champion", reason="undo", actor="dave").version == 1


def test_protected_aliases_and_separation_of_duties():
    protected = config(protected=["champion"], approver_must_differ=True, alias_admins={"roles": ["Admin"], "users": ["ops-bot"]})
    with pytest.raises(ForbiddenMoveError) as refused:
        check_direct_move(protected, "champion", user="alice", roles=["USER"])
    assert str(refused.value) == (
        "churn 'champion' is protected (promotion.protected): it moves only through an approved promotion in "
        "churn__retrain, or directly by role Admin, user ops-bot (promotion.alias_admins); alice has roles user")
    check_direct_move(protected, "champion", user="root", roles=["ADMIN"])  # roles compare case-insensitively
    check_direct_move(protected, "champion", user="ops-bot", roles=[])
    check_direct_move(protected, "challenger", user="alice", roles=[])  # not protected
    check_direct_move(None, "champion", user="alice", roles=[])  # no pipeline file: nothing protected

    assert protected.promotion.approval_required("none"), "a protected promotion alias always asks a person"
    assert not config().promotion.approval_required("none")
    assert approval_refusal(protected, approver="alice", started_by="alice") == (
        "alice started this run and may not approve its promotion (promotion.approver_must_differ); "
        "another person must approve")
    assert approval_refusal(protected, approver="bob", started_by="alice") is None
    assert approval_refusal(protected, approver="alice", started_by=None) is None  # a scheduled run
    assert approval_refusal(config(), approver="alice", started_by="alice") is None
    with pytest.raises(ForbiddenMoveError, match="needs a person's approval"):
        require_approval_for_protected(protected, "champion", None)


def test_the_announcement_names_versions_people_and_metric_changes(registry):
    register(registry, "churn", 2)
    for version, auc in ((1, 0.91), (2, 0.93)):
        registry.record_evaluation("churn", version, metrics={"roc_auc": auc, "accuracy": 0.8}, passed=True)
    registry.set_alias("churn", "champion", 1, actor="alice", reason="first")
    event = registry.set_alias("churn", "champion", 2, actor="bob", reason="weekly retrain",
                               approval=Approval(approver="carol", comment="ship it", at=datetime.now(timezone.utc)))
    from airflow_mlops.triggers.alias_history import move_payload

    announcement = describe_alias_move(config(), registry, move_payload(event), ui_base_url="https://af.example/mlops")
    assert announcement["message"].splitlines() == [
        "churn 'champion': v1 -> v2 (set) by bob",
        "why: weekly retrain",
        "approved by carol: ship it",
        "accuracy: 0.8 -> 0.8 (+0)",
        "roc_auc: 0.91 -> 0.93 (+0.02)",
        "https://af.example/mlops/models/churn/versions/2",
    ]
    payload = announcement["payload"]
    assert payload["metric_changes"]["roc_auc"]["change"] == pytest.approx(0.02)
    assert (payload["from_version"], payload["to_version"], payload["approver"]) == (1, 2, "carol")


def test_the_approval_task_records_a_rejection_and_a_timeout(registry):
    from types import SimpleNamespace

    from airflow.providers.standard.exceptions import HITLTimeoutError

    from airflow_mlops.operators.approval import PromotionApprovalOperator

    register(registry, "churn", 2)
    registry.set_alias("churn", "champion", 1, actor="alice", reason="first")
    approve = PromotionApprovalOperator(
        task_id="approve", subject="Promote?", approval="required", config=config().model_dump(mode="json"),
        evaluated={"model": {"name": "churn", "version": 2}, "champion_version": 1},
    )
    context = {"dag_run": SimpleNamespace(dag_id="churn__retrain", run_id="manual__1", run_type="manual",
                                          triggering_user_name="alice"),
               "ti": SimpleNamespace(task_id="approve", map_index=-1), "task": approve}
    answered = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
    approve.execute_complete(context, {"chosen_options": ["Reject"], "params_input": {"comment": "too slow"},
                                       "responded_at": answered, "responded_by_user": {"id": "7", "name": "bob"}})
    with pytest.raises(HITLTimeoutError):
        approve.execute_complete(context, {"error": "no answer", "error_type": "timeout"})
    rejected, timeout = registry.history("churn", "champion")[1:]
    assert (rejected.kind, rejected.to_version, rejected.approver, rejected.approval_comment, rejected.approved_at) == (
        "rejected", 2, "bob", "too slow", answered)
    assert (timeout.kind, timeout.to_version, timeout.approver, timeout.reason) == (
        "approval_timeout", 2, None, "nobody answered the approval request within 72 h")
    assert registry.aliases("churn") == {"champion": 1}


def test_the_rollback_dag_moves_a_protected_alias_only_for_named_alias_admins(registry):
    from airflow_mlops.steps import rollback_alias

    register(registry, "churn", 2)
    registry.set_alias("churn", "champion", 1, actor="a", reason="1")
    registry.set_alias("churn", "champion", 2, actor="a", reason="2")
    protected = config(protected=["champion"], alias_admins={"roles": ["admin"], "users": ["oncall"]})
    with pytest.raises(ForbiddenMoveError, match="only for the users in promotion.alias_admins.users, and alice"):
        rollback_alias(protected, registry, alias="champion", actor="alice", reason="undo")
    assert registry.aliases("churn") == {"champion": 2}
    assert rollback_alias(protected, registry, alias="champion", actor="oncall", reason="undo").model.version == 1


def test_a_move_handed_on_again_is_announced_once(registry):
    from airflow_mlops.steps import already_announced, mark_announced

    register(registry, "churn", 2)
    first = registry.set_alias("churn", "champion", 1, actor="a", reason="1")
    second = registry.set_alias("churn", "champion", 2, actor="a", reason="2")
    pipeline = config()
    assert not already_announced(pipeline, registry, {"event_id": first.event_id})
    mark_announced(pipeline, registry, {"event_id": first.event_id})
    assert already_announced(pipeline, registry, {"event_id": first.event_id})
    assert not already_announced(pipeline, registry, {"event_id": second.event_id})


def test_the_approval_form_shows_the_gate_slices_and_fairness_in_words_with_the_version_link(registry):
    from airflow_mlops.operators.approval import PromotionApprovalOperator
    from airflow_mlops.steps import approval_body

    register(registry, "churn", 2)
    failure = "roc_auc on plan=basic is 0.71, below 0.8"
    registry.record_evaluation(
        "churn", 2, metrics={"roc_auc": 0.9}, passed=False,
        slice_metrics={"plan=basic": {"rows": 300, "roc_auc": 0.71, "failures": [failure]},
                       "plan=pro": {"rows": 200, "roc_auc": 0.93}, "plan=trial": {"rows": 3, "note": "fewer than 30 rows: not scored"}},
        fairness={"sex": {"metrics": {"demographic_parity_difference": 0.31},
                          "details": {"demographic_parity_difference": "selection rate female 0.12, male 0.43"}}})
    evaluated = {"model": {"name": "churn", "version": 2}, "champion_version": 1,
                 "gate": {"summary": "roc_auc 0.9 on 500 test rows; 1 check failed", "failures": [failure],
                          "metrics": {"primary_metric": "roc_auc"}}}
    body = approval_body(registry, evaluated=evaluated)
    assert body.splitlines() == [
        "**churn v2**: roc_auc 0.9 on 500 test rows; 1 check failed",
        "", "**Failed checks**", f"- {failure}",
        "", "**Slices**", f"- plan=basic (300 rows): {failure}", "- plan=pro (200 rows): roc_auc 0.93",
        "- plan=trial: fewer than 30 rows: not scored",
        "", "**Fairness**", "- demographic_parity_difference on sex is 0.31 (selection rate female 0.12, male 0.43)",
        "", "- [Version page](/mlops/models/churn/versions/2)", "- [Model card](/mlops/models/churn/versions/2/card)",
    ]
    approve = PromotionApprovalOperator(task_id="approve", subject="Promote?", approval="required",
                                        config=config().model_dump(mode="json"), evaluated=evaluated)
    assert approve._body() == body
    approve.body = "Read the report first."
    assert approve._body() == "Read the report first."  # a DAG's own body wins
