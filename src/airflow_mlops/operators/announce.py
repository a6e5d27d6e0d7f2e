"""AnnounceAliasMovesOperator: the `alias_moved` alert, once per move in the alias history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MlopsBaseOperator
from airflow_mlops.operators.links import UI_PREFIX

if TYPE_CHECKING:
    from airflow.sdk import Context


class AnnounceAliasMovesOperator(MlopsBaseOperator):
    """Send the pipeline's `alias_moved` alert for every alias move that started this run.

    Runs in `<pipeline>__announce`, scheduled on the alias-moves Asset: each event carries one
    move of the alias history (from the AssetWatcher), and several moves that arrive before the
    run starts are announced one by one, oldest first. A move handed on again (a triggerer restarted
    before Airflow confirmed it) is announced once: the last announced move is kept in the registry.

    .. seealso::
        docs/governance.md and docs/operators.md
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.operators.alerts import notify
        from airflow_mlops.steps import already_announced, describe_alias_move, mark_announced

        moves = sorted(
            (
                event.extra["payload"]
                for events in (context.get("triggering_asset_events") or {}).values()
                for event in events
                if isinstance((event.extra or {}).get("payload"), dict)
            ),
            key=lambda move: move.get("event_id") or 0,
        )
        if not moves:
            self.log.info("no alias move started this run: nothing to announce")
        announced = []
        for move in moves:
            if already_announced(self.pipeline, self.registry, move):
                self.log.info("move %s was announced before (handed on again after a restart)", move.get("event_id"))
                continue
            announcement = describe_alias_move(self.pipeline, self.registry, move, ui_base_url=_ui_base_url())
            notify(self.pipeline, "alias_moved", announcement["message"], context, payload=announcement["payload"])
            mark_announced(self.pipeline, self.registry, move)
            announced.append(move.get("event_id"))
        return {"announced": announced}


def _ui_base_url() -> str:
    """Where the registry pages are: Airflow's public base URL (`[api] base_url`) + the plugin's prefix."""
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="").rstrip("/") + UI_PREFIX
