"""AliasMovedTrigger: every move in the registry's alias history becomes one Asset event.

Attached to an Asset through an `AssetWatcher`, the trigger runs in Airflow's
triggerer and follows the append-only alias history, so a move made anywhere
(retrain or rollback DAG, registry pages, plugin API, CLI, Python) starts the
DAGs scheduled on that Asset, with the move as the event's payload.

It runs in Airflow's ack mode for shared streams: the position in the history
(the last event id handed on) is written to the registry only after Airflow has
stored the Asset event in its metadata database. A triggerer that stops, or a
scheduler that is down, therefore loses no move; after a restart the watcher
resumes from that position. A move is handed on twice only when the triggerer
dies in the second or two between Airflow storing its event and the position
being written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import SharedStreamProducer

if TYPE_CHECKING:
    from airflow.triggers.shared_stream import AdvanceItem

    from airflow_mlops.registry import AliasEvent, ModelRegistry

log = logging.getLogger(__name__)

FIRST_START_LOOKBACK = timedelta(minutes=10)
"""A watcher that has never run hands on the moves of the last ten minutes (a promotion made while
Airflow was still registering the watcher is not missed) and counts older history as announced."""


def move_payload(event: AliasEvent) -> dict[str, Any]:
    """The Asset event's payload: what moved, from where to where, who did it and who approved it."""
    return {
        "model": event.name,
        "alias": event.alias,
        "kind": event.kind,
        "from_version": event.from_version,
        "to_version": event.to_version,
        "actor": event.actor,
        "reason": event.reason,
        "event_id": event.event_id,
        "at": event.at.isoformat(),
        "dag_id": event.dag_id,
        "run_id": event.run_id,
        "approver": event.approver,
        "approval_comment": event.approval_comment,
    }


class AliasHistoryProducer(SharedStreamProducer):
    """Reads the alias history after the watcher's stored position; `advance` stores the new position."""

    def __init__(self, *, model: str, stream: str, aliases: list[str] | None, registry_conn_id: str,
                 poll_interval: float) -> None:
        self.model = model
        self.stream = stream
        self.aliases = aliases
        self.registry_conn_id = registry_conn_id
        self.poll_interval = poll_interval
        self._registry: ModelRegistry | None = None

    def _open_registry(self) -> ModelRegistry:
        from airflow_mlops.hooks.registry import MlopsRegistryHook

        if self._registry is None:
            self._registry = MlopsRegistryHook(self.registry_conn_id).get_conn()
        return self._registry

    def _start_position(self) -> int:
        from airflow_mlops.registry.models import utcnow

        registry = self._open_registry()
        position = registry.alias_cursor(self.stream)
        if position is None:
            position = registry.last_alias_event_id(self.model, before=utcnow() - FIRST_START_LOOKBACK)
            registry.set_alias_cursor(self.stream, position)
            log.info("alias watcher %s starts after history event %s", self.stream, position)
        return position

    def _moves_after(self, position: int) -> list[AliasEvent]:
        return self._open_registry().alias_moves_after(self.model, position, aliases=self.aliases)

    def _commit(self, event_id: int) -> None:
        self._open_registry().set_alias_cursor(self.stream, event_id)

    async def open_stream(self) -> AsyncIterator[tuple[dict[str, Any], int]]:
        from asgiref.sync import sync_to_async

        position = await sync_to_async(self._start_position)()
        while True:
            moves = await sync_to_async(self._moves_after)(position)
            for move in moves:
                position = move.event_id
                yield move_payload(move), move.event_id
            if not moves:
                await asyncio.sleep(self.poll_interval)

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """Store the position after the events Airflow has stored; a failed one is read again."""
        from asgiref.sync import sync_to_async

        stored = 0
        for item in batch:
            # All-zero counts mean no subscriber was online: nobody took the move, so it is not stored.
            if item.outcome.failed or not item.outcome.acked:
                break
            stored = item.broker_payload
        if stored:
            await sync_to_async(self._commit)(stored)
        if stored != batch[-1].broker_payload:
            # Raising ends this poll; the next one starts from the stored position and hands the move on again.
            raise RuntimeError(f"alias watcher {self.stream}: Airflow did not store the event of a move; reading it again")

    async def commit(self, event_id: int) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(self._commit)(event_id)


class AliasMovedTrigger(BaseEventTrigger):
    """Fires once per move of `model`'s aliases (only those in `aliases`, when given).

    :param model: the registered model (the pipeline name).
    :param stream: a name unique per watcher; its position in the history is stored under it.
    :param aliases: the aliases to follow; None follows every alias.
    :param registry_conn_id: connection of the model registry (embedded SQLite when absent).
    :param poll_interval: seconds between reads of the history when nothing moved.
    """

    def __init__(self, *, model: str, stream: str, aliases: list[str] | None = None,
                 registry_conn_id: str = "mlops_registry", poll_interval: float = 5.0) -> None:
        super().__init__()
        self.model = model
        self.stream = stream
        self.aliases = list(aliases) if aliases is not None else None
        self.registry_conn_id = registry_conn_id
        self.poll_interval = float(poll_interval)

    def _kwargs(self) -> dict[str, Any]:
        return {"model": self.model, "stream": self.stream, "aliases": self.aliases,
                "registry_conn_id": self.registry_conn_id, "poll_interval": self.poll_interval}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", self._kwargs()

    def shared_stream_key(self) -> tuple[str, str]:
        # One stream per watcher: its only subscriber is this trigger, so its position is its own.
        return ("airflow-mlops-alias-history", self.stream)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> AliasHistoryProducer:
        return AliasHistoryProducer(**kwargs)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for move in shared_stream:
            yield TriggerEvent(move)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Without shared streams: hand each move on, then store the position (a crash in between repeats it)."""
        producer = AliasHistoryProducer(**self._kwargs())
        async for move, event_id in producer.open_stream():
            yield TriggerEvent(move)
            await producer.commit(event_id)
