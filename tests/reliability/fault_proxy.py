"""A fault-injecting HTTP/1.1 proxy for tests: boto3 talks to it as its endpoint, it forwards to moto.

Only 127.0.0.1, every socket and sleep bounded. Faults are programmed per test:

    proxy.inject(Fault("truncate", method="GET", path=r"/data\\.bin", times=2))

makes the next two GETs whose target (path and query) matches the pattern arrive cut short.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

SOCKET_TIMEOUT = 10.0
MAX_DELAY = 10.0
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}

FaultKind = Literal["status", "drop_before", "drop_after", "truncate", "delay"]


@dataclass
class Fault:
    """One programmed fault.

    - `status`: answer `status` with an S3 error document (`code`) without forwarding.
    - `drop_before`: close the connection without forwarding (the request never reaches S3).
    - `drop_after`: forward, then close without answering (S3 applied it; the answer is lost).
    - `truncate`: forward, send the headers with the full Content-Length and `keep` bytes of the
      body (default: half), then close.
    - `delay`: forward, send the headers and `keep` bytes, wait `seconds`, then send the rest.

    `method` (None: any) and `path` (a regex searched in path and query) select requests;
    `times` is how many matching requests get the fault (None: all until cleared).
    `then` runs in the proxy after the request is forwarded and before the client sees the fault.
    """

    kind: FaultKind
    method: str | None = "GET"
    path: str = ""
    times: int | None = 1
    status: int = 503
    code: str = "SlowDown"
    keep: int | None = None
    seconds: float = 0.0
    then: Callable[[], None] | None = None
    applied: int = field(default=0, init=False)

    def matches(self, method: str, target: str) -> bool:
        if self.times is not None and self.applied >= self.times:
            return False
        return (self.method is None or self.method == method) and re.search(self.path, target) is not None


@dataclass(frozen=True)
class Hit:
    """One request the proxy saw, and the fault it got (None: forwarded untouched)."""

    method: str
    target: str
    headers: dict[str, str]
    fault: FaultKind | None


class FaultProxy:
    """A threaded forwarding proxy on 127.0.0.1 (free port) in front of `upstream` (also loopback)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in {"127.0.0.1", "localhost"}:
            raise ValueError(f"{upstream}: the fault proxy only forwards to loopback")
        self.upstream = (parts.hostname, parts.port or 80)
        self.faults: list[Fault] = []
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=SOCKET_TIMEOUT)

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.hits.clear()

    def requests(self, method: str | None = None, path: str = "") -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if (method is None or h.method == method) and re.search(path, h.target)]

    def _take(self, method: str, target: str, headers: dict[str, str]) -> Fault | None:
        with self._lock:
            fault = next((f for f in self.faults if f.matches(method, target)), None)
            if fault is not None:
                fault.applied += 1
            self.hits.append(Hit(method, target, headers, fault.kind if fault else None))
            return fault

    def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        connection = http.client.HTTPConnection(*self.upstream, timeout=SOCKET_TIMEOUT)
        try:
            connection.request(method, target, body=body or None, headers=headers)
            response = connection.getresponse()
            return _Answer(response.status, response.reason, response.getheaders(), response.read())
        finally:
            connection.close()


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    payload: bytes


def _error_document(code: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>injected by the fault proxy</Message><RequestId>fault-proxy</RequestId></Error>"
    ).encode()


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = SOCKET_TIMEOUT

        def log_message(self, format: str, *args: object) -> None:  # the base class's name
            """Quiet: the hits list is the log."""

        def _request_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _drop(self) -> None:
            self.close_connection = True
            self.wfile.flush()

        def _relay(self) -> None:
            try:
                self._relay_one()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a read timeout): nothing to answer

        def _relay_one(self) -> None:
            body = self._request_body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body:
                headers["Content-Length"] = str(len(body))
            fault = proxy._take(self.command, self.path, dict(headers))
            if fault is not None and fault.kind == "status":
                payload = b"" if self.command == "HEAD" else _error_document(fault.code)
                self.send_response_only(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(_error_document(fault.code))))
                self.end_headers()
                self.wfile.write(payload)
                return
            if fault is not None and fault.kind == "drop_before":
                return self._drop()
            answer = proxy._forward(self.command, self.path, headers, body)
            payload = answer.payload
            if fault is not None and fault.then is not None:
                fault.then()
            if fault is not None and fault.kind == "drop_after":
                return self._drop()
            self.send_response_only(answer.status, answer.reason)
            for name, value in answer.headers:
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            upstream_length = next((v for k, v in answer.headers if k.lower() == "content-length"), "0")
            self.send_header("Content-Length", upstream_length if self.command == "HEAD" else str(len(payload)))
            self.end_headers()
            if fault is None:
                self.wfile.write(payload)
                return
            keep = len(payload) // 2 if fault.keep is None else min(fault.keep, len(payload))
            self.wfile.write(payload[:keep])
            self.wfile.flush()
            if fault.kind == "truncate":
                return self._drop()
            time.sleep(min(fault.seconds, MAX_DELAY))
            self.wfile.write(payload[keep:])

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

    return Handler
