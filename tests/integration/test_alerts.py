"""Alerts through Airflow's notifiers: Slack (Slack provider), e-mail (SMTP provider) and a signed
webhook (HTTP provider), each against a loopback server; a dead channel never fails the task."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socketserver
import threading
import time
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from airflow.utils.types import DagRunType

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.operators.alerts import FailureAlert, notify, sign
from airflow_mlops.operators.base import run_actor

SECRET = "shared-secret"


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(
        {"conn_type": "slackwebhook", "host": f"{base}/services", "password": "T0/B0/XYZ"}))
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_WEBHOOK", json.dumps(
        {"conn_type": "http", "host": f"{base}/hooks/mlops", "password": SECRET}))
    yield _Hook.received
    server.shutdown()


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP for one plain (no TLS, no login) delivery per connection."""

    mails: list[bytes] = []

    def handle(self) -> None:
        self.wfile.write(b"220 loopback ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line.strip().split(b" ")[0].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250 loopback\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                data = b"".join(iter(self.rfile.readline, b".\r\n"))
                _Smtp.mails.append(data)
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp(monkeypatch):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Smtp.mails = []
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": server.server_address[1],
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "mlops@example.com", "timeout": 10},
    }))
    yield _Smtp.mails
    server.shutdown()


def config(**alerts):
    return parse_pipeline_config({
        "pipeline": "churn", "data": {"train": "t.parquet", "target": "y"},
        "model": {"flavor": "sklearn", "task": "regression"}, "alerts": alerts,
    })


def test_an_alias_move_reaches_slack_mail_and_a_signed_webhook_once_each(http, smtp, caplog):
    pipeline = config(on=["alias_moved"], email=["ops@example.com"], slack_webhook_conn_id="slack_alerts",
                      webhook_conn_id="mlops_webhook")
    payload = {"model": "churn", "alias": "champion", "from_version": 1, "to_version": 2, "event_id": 7}
    with caplog.at_level(logging.WARNING, logger="airflow_mlops.alerts"):
        notify(pipeline, "alias_moved", "churn 'champion': v1 -> v2 (set) by bob", {}, payload=payload)
    webhook, slack = sorted(http, key=lambda r: r["path"])
    assert slack["path"] == "/services/T0/B0/XYZ"
    assert "churn: alias moved" in json.loads(slack["body"])["text"]
    assert webhook["path"] == "/hooks/mlops"
    stamp = webhook["headers"]["X-Mlops-Timestamp"]
    assert abs(int(stamp) - time.time()) < 60
    expected = "sha256=" + hmac.new(SECRET.encode(), f"{stamp}.".encode() + webhook["body"], hashlib.sha256).hexdigest()
    assert webhook["headers"]["X-Mlops-Signature"] == expected == sign(SECRET, stamp, webhook["body"])
    message = json.loads(webhook["body"])
    assert (message["event"], message["pipeline"], message["payload"]) == ("alias_moved", "churn", payload)
    [mail] = smtp
    parsed = message_from_bytes(mail)
    assert parsed["To"] == "ops@example.com" and parsed["Subject"] == "[airflow-mlops] churn: alias moved"
    assert "v1 -&gt; v2" in parsed.get_payload(0).get_payload(decode=True).decode()
    assert "v1 -> v2" in caplog.text


def test_events_not_listed_are_only_logged(http, caplog):
    with caplog.at_level(logging.WARNING, logger="airflow_mlops.alerts"):
        notify(config(on=["failure"], slack_webhook_conn_id="slack_alerts", webhook_conn_id="mlops_webhook"),
               "drift", "3 columns drifted", {})
    assert http == []
    assert "3 columns drifted" in caplog.text


def test_an_unreachable_channel_is_logged_not_raised(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_DEAD", json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9/x", "password": "s"}))
    monkeypatch.setenv("AIRFLOW_CONN_FTP", json.dumps({"conn_type": "http", "host": "ftp://example.com/x", "password": "s"}))
    with caplog.at_level(logging.ERROR, logger="airflow_mlops.alerts"):
        FailureAlert(config(webhook_conn_id="dead"))({"exception": RuntimeError("boom")})
        FailureAlert(config(webhook_conn_id="ftp"))({"exception": RuntimeError("boom")})
    assert "could not send the failure alert by webhook dead" in caplog.text
    assert "the webhook URL in host must start with https:// or http://" in caplog.text


@pytest.mark.parametrize(("run_type", "user", "actor"), [
    (DagRunType.MANUAL, "alice", "alice"),
    (DagRunType.MANUAL, None, "manual run (churn__retrain)"),
    (DagRunType.SCHEDULED, None, "schedule (churn__retrain)"),
    (DagRunType.ASSET_TRIGGERED, None, "asset event (churn__retrain)"),
    (DagRunType.ASSET_MATERIALIZATION, None, "asset materialization (churn__retrain)"),
    (DagRunType.OPERATOR_TRIGGERED, None, "another DAG (churn__retrain)"),
    (DagRunType.BACKFILL_JOB, "bob", "backfill by bob"),
    (DagRunType.BACKFILL_JOB, None, "backfill (churn__retrain)"),
])
def test_actors_are_readable_for_every_kind_of_run(run_type, user, actor):
    assert run_actor("churn__retrain", run_type, user) == actor


def test_every_run_type_has_a_readable_actor():
    for run_type in DagRunType:
        actor = run_actor("d", run_type, None)
        assert "DagRunType" not in actor and "_" not in actor and actor.endswith("(d)")
