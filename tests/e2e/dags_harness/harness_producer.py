"""Harness smoke test: a manual DAG whose task doubles a Param and updates an Asset
(a negative `n` fails, to show what the harness reports about a failed run)."""

from __future__ import annotations

from airflow.sdk import Asset, Param, dag, task


@dag(dag_id="harness_producer", schedule=None, catchup=False, params={"n": Param(1, type="integer")})
def harness_producer():
    @task(outlets=[Asset("harness_asset")])
    def double(params=None) -> int:
        if params["n"] < 0:
            raise ValueError(f"n must not be negative, got {params['n']}")
        return params["n"] * 2

    double()


harness_producer()
