"""Pytest fixtures: a real S3 API (moto's server mode) on 127.0.0.1.

Load with `-p airflow_mlops.testing.s3` or `pytest_plugins = ["airflow_mlops.testing.s3"]`.
The server is an HTTP endpoint on loopback, so code under test goes through
boto3's real HTTP stack (retries, multipart uploads, paginators).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server on 127.0.0.1 (free port), for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def dummy_session() -> Any:
    """A boto3 session with dummy credentials. Reusing one for many clients saves loading the
    service model each time (about a second on a busy machine); sessions are not thread-safe."""
    import boto3

    return boto3.session.Session(region_name=REGION, **CREDENTIALS)


def s3_client_for(endpoint_url: str, *, max_attempts: int = 3, session: Any = None, **config: Any) -> Any:
    """A boto3 S3 client bound to `endpoint_url` with dummy credentials (never the machine's);
    `config` adds botocore `Config` options (timeouts, for tests of slow endpoints)."""
    from botocore.config import Config

    session = session or dummy_session()
    return session.client(
        "s3", endpoint_url=endpoint_url,
        config=Config(retries={"max_attempts": max_attempts, "mode": "standard"}, **config),
    )


@pytest.fixture
def s3_client(s3_server: str) -> Any:
    return s3_client_for(s3_server)


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """A fresh, uniquely named bucket."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name
