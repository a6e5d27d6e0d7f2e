"""Alerts per the pipeline's `alerts` section, on Airflow's notifier framework.

Every alert is logged; when its event is in `alerts.on` it also goes to e-mail
(the SMTP provider's `SmtpNotifier`), Slack (the Slack provider's
`SlackWebhookNotifier`) and a signed webhook for other systems (the HTTP
provider's `HttpHook`, HMAC-SHA256 over the timestamp and the body).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.config import PipelineConfig

log = logging.getLogger("airflow_mlops.alerts")

SIGNATURE_HEADER = "X-Mlops-Signature"
TIMESTAMP_HEADER = "X-Mlops-Timestamp"


def _run_line(context: Context | dict[str, Any]) -> str:
    ti = context.get("ti")
    dag_run = context.get("dag_run")
    parts = [getattr(dag_run, "dag_id", None), getattr(dag_run, "run_id", None), getattr(ti, "task_id", None)]
    return " / ".join(str(p) for p in parts if p)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature: `sha256=` + hex HMAC-SHA256 of `<timestamp>.<body>` with the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class PipelineAlertNotifier(BaseNotifier):
    """Send one alert of a pipeline to every channel its `alerts` section names.

    A channel that cannot be reached is logged and does not fail the task: the
    alert is about the pipeline, and losing the run over a mail server would hide it.

    :param config: the pipeline.
    :param event: one of `failure`, `gate_failed`, `drift`, `degradation`, `alias_moved`.
    :param message: the text for people (mail, Slack); templated.
    :param payload: structured details for machines (the webhook's `payload`).
    """

    template_fields = ("message",)

    def __init__(self, config: PipelineConfig, event: str, message: str = "",
                 payload: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.event = event
        self.message = message
        self.payload = payload

    def notify(self, context: Context | dict[str, Any]) -> None:
        subject = f"[airflow-mlops] {self.config.pipeline}: {self.event.replace('_', ' ')}"
        text = f"{subject}\n{_run_line(context)}\n{self.message}"
        log.warning("%s", text)
        alerts = self.config.alerts
        if self.event not in alerts.on:
            return
        if alerts.email:
            self._deliver("e-mail to " + ", ".join(alerts.email), context, self._email, subject, text)
        if alerts.slack_webhook_conn_id:
            self._deliver(f"Slack via {alerts.slack_webhook_conn_id}", context, self._slack, text)
        if alerts.webhook_conn_id:
            self._deliver(f"webhook {alerts.webhook_conn_id}", context, self._webhook, text)

    def _deliver(self, channel: str, context: Context | dict[str, Any], send: Any, *args: Any) -> None:
        try:
            send(context, *args)
        except Exception:  # see the class docstring
            log.exception("could not send the %s alert by %s", self.event, channel)

    def _email(self, context: Context | dict[str, Any], subject: str, text: str) -> None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(to=self.config.alerts.email, subject=subject,
                     html_content=f"<pre>{html.escape(text)}</pre>").notify(context)

    def _slack(self, context: Context | dict[str, Any], text: str) -> None:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        SlackWebhookNotifier(slack_webhook_conn_id=self.config.alerts.slack_webhook_conn_id, text=text,
                             timeout=10).notify(context)

    def _webhook(self, context: Context | dict[str, Any], text: str) -> None:
        from airflow.providers.http.hooks.http import HttpHook

        conn_id = self.config.alerts.webhook_conn_id
        hook = HttpHook(method="POST", http_conn_id=conn_id)
        connection = hook.get_connection(conn_id)
        url = connection.host or ""
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"connection {conn_id!r}: the webhook URL in host must start with https:// or http://")
        if not connection.password:
            raise ValueError(f"connection {conn_id!r}: the shared secret for signing goes in the password")
        body = json.dumps({
            "event": self.event, "pipeline": self.config.pipeline, "message": text, "payload": self.payload,
            "sent_at": datetime.now(timezone.utc).isoformat(),
        }, default=str).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign(connection.password, timestamp, body)}
        hook.run(endpoint=None, data=body, headers=headers, extra_options={"timeout": 10})


def notify(config: PipelineConfig, event: str, message: str, context: Context | dict[str, Any], *,
           payload: dict[str, Any] | None = None) -> None:
    """Log the alert; send it to the configured channels when `event` is in `alerts.on`."""
    PipelineAlertNotifier(config, event, message, payload).notify(context)


class FailureAlert(BaseNotifier):
    """`on_failure_callback` for the templates' tasks: a failed task becomes a `failure` alert."""

    def __init__(self, config: PipelineConfig) -> None:
        super().__init__()
        self.config = config

    def notify(self, context: Context) -> None:
        notify(self.config, "failure", f"task failed: {context.get('exception')}", context)
