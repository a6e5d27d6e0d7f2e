"""Alerts: always logged; sent to a Slack webhook when configured; a dead channel never fails the task."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.operators.alerts import FailureAlert, notify


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    url = f"http://127.0.0.1:{server.server_port}/services/T0/B0"
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps({"conn_type": "http", "password": url}))
    yield _Hook.received
    server.shutdown()


def config(**alerts):
    return parse_pipeline_config({
        "pipeline": "churn", "data": {"train": "t.parquet", "target": "y"},
        "model": {"flavor": "sklearn", "task": "regression"}, "alerts": alerts,
    })


def test_gate_failures_go_to_slack_and_the_log(webhook, caplog):
    with caplog.at_level(logging.WARNING, logger="airflow_mlops.alerts"):
        notify(config(on=["gate_failed"], slack_webhook_conn_id="slack_alerts"), "gate_failed", "roc_auc 0.8 is below 0.9", {})
    assert webhook and "churn: gate failed" in webhook[0]["text"] and "roc_auc 0.8 is below 0.9" in webhook[0]["text"]
    assert "roc_auc 0.8 is below 0.9" in caplog.text


def test_events_not_listed_are_only_logged(webhook, caplog):
    with caplog.at_level(logging.WARNING, logger="airflow_mlops.alerts"):
        notify(config(on=["failure"], slack_webhook_conn_id="slack_alerts"), "drift", "3 columns drifted", {})
    assert webhook == []
    assert "3 columns drifted" in caplog.text


def test_an_unreachable_channel_is_logged_not_raised(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_DEAD", json.dumps({"conn_type": "http", "password": "http://127.0.0.1:9/nothing"}))
    with caplog.at_level(logging.ERROR, logger="airflow_mlops.alerts"):
        FailureAlert(config(slack_webhook_conn_id="dead"))({"exception": RuntimeError("boom")})
    assert "could not post the alert to Slack via dead" in caplog.text
