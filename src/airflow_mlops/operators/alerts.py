"""Alerts per the pipeline's `alerts` section: always logged, then e-mail and/or a Slack webhook."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.config import PipelineConfig

log = logging.getLogger("airflow_mlops.alerts")


def _run_line(context: Context | dict[str, Any]) -> str:
    ti = context.get("ti")
    dag_run = context.get("dag_run")
    parts = [getattr(dag_run, "dag_id", None), getattr(dag_run, "run_id", None), getattr(ti, "task_id", None)]
    return " / ".join(str(p) for p in parts if p)


def _send_email(recipients: list[str], subject: str, body: str) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook() as smtp:
        smtp.send_email_smtp(to=recipients, subject=subject, html_content=f"<pre>{_escape(body)}</pre>")


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def _post_slack(conn_id: str, text: str) -> None:
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    # Slack webhook connections keep the secret part of the URL in the password.
    web = ("https://", "http://")
    url = conn.host if conn.host and conn.host.startswith(web) else None
    if conn.password and conn.password.startswith(web):
        url = conn.password
    elif conn.password and url:
        url = url.rstrip("/") + "/" + conn.password.lstrip("/")
    if not url:
        raise ValueError(f"connection {conn_id!r} holds no webhook URL in host or password")
    request = urllib.request.Request(
        url, data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - https URL from a connection
        pass


def notify(config: PipelineConfig, event: str, message: str, context: Context | dict[str, Any]) -> None:
    """Log the alert; send it to the configured channels when `event` is in `alerts.on`.

    A channel that cannot be reached is logged and does not fail the task: the
    alert is about the pipeline, and losing the run over a mail server would hide it.
    """
    subject = f"[airflow-mlops] {config.pipeline}: {event.replace('_', ' ')}"
    text = f"{subject}\n{_run_line(context)}\n{message}"
    log.warning("%s", text)
    if event not in config.alerts.on:
        return
    if config.alerts.email:
        try:
            _send_email(config.alerts.email, subject, text)
        except Exception:  # noqa: BLE001 - see docstring
            log.exception("could not send the alert e-mail to %s", ", ".join(config.alerts.email))
    if config.alerts.slack_webhook_conn_id:
        try:
            _post_slack(config.alerts.slack_webhook_conn_id, text)
        except Exception:  # noqa: BLE001 - see docstring
            log.exception("could not post the alert to Slack via %s", config.alerts.slack_webhook_conn_id)


class FailureAlert:
    """`on_failure_callback` for the templates' tasks: a failed task becomes a `failure` alert."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config

    def __call__(self, context: Context) -> None:
        error = context.get("exception")
        notify(self.config, "failure", f"task failed: {error}", context)
