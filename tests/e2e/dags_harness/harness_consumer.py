"""Harness smoke test: a DAG that Airflow starts by itself when `harness_asset` is updated."""

from __future__ import annotations

from airflow.sdk import Asset, dag, task


@dag(dag_id="harness_consumer", schedule=[Asset("harness_asset")], catchup=False)
def harness_consumer():
    @task
    def consume(triggering_asset_events=None) -> int:
        return len(triggering_asset_events[Asset("harness_asset")])

    consume()


harness_consumer()
