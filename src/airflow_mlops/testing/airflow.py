"""A real Airflow 3 on 127.0.0.1 for end-to-end tests: api-server, scheduler, dag-processor, triggerer.

`running_airflow()` gives each run its own AIRFLOW_HOME and metadata database,
starts every component as its own process (logs under `<home>/logs/`), waits
until they are healthy, and stops them all afterwards, also when a test fails.
The REST API v2 is reached with JWTs from the simple auth manager, for an
`admin` and a read-only `viewer` user.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASSWORDS = {"admin": "admin-password", "viewer": "viewer-password"}
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass
class AirflowInstance:
    base_url: str
    home: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)

    def token(self, user: str = "admin") -> str:
        if user not in self._tokens:
            answer = self._request("POST", "/auth/token", {"username": user, "password": PASSWORDS[user]}, token=None)
            self._tokens[user] = answer["access_token"]
        return self._tokens[user]

    def _request(self, method: str, path: str, body: Any = None, *, token: str | None) -> Any:
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, f"{method} {path} -> {exc.code}: {exc.read().decode()[:2000]}") from None
        return json.loads(text) if text else None

    def api(self, method: str, path: str, body: Any = None, *, user: str = "admin") -> Any:
        return self._request(method, path, body, token=self.token(user))

    def wait_for_dag(self, dag_id: str, timeout: float = 180, unpause: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                dag = self.api("GET", f"/api/v2/dags/{dag_id}")
                break
            except ApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise AssertionError(f"DAG {dag_id} did not appear: {exc}\n{self.diagnostics()}") from None
                time.sleep(2)
        if unpause and dag.get("is_paused"):
            dag = self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        return dag

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-start_date&limit=100")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=200")["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        state = "queued"
        while time.monotonic() < deadline:
            state = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                break
            self._check_alive()
            time.sleep(3)
        if state != "success":
            raise AssertionError(f"{dag_id} run {run_id} ended {state}\n{self.run_report(dag_id, run_id)}\n{self.diagnostics()}")
        return state

    def run_report(self, dag_id: str, run_id: str) -> str:
        lines = []
        for ti in self.task_instances(dag_id, run_id):
            lines.append(f"  {ti['task_id']}[{ti.get('map_index')}]: {ti['state']}")
            if ti["state"] in ("failed", "upstream_failed"):
                for log in sorted(self.home.glob(f"logs/dag_id={dag_id}/run_id={run_id}/task_id={ti['task_id']}/**/*.log")):
                    lines.append(f"--- {log.name}\n" + log.read_text(errors="replace")[-3000:])
        return "\n".join(lines)

    def import_errors(self) -> list[dict[str, Any]]:
        return self.api("GET", "/api/v2/importErrors")["import_errors"]

    def log_tail(self, component: str, lines: int = 40) -> str:
        path = self.home / "logs" / f"{component}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def diagnostics(self) -> str:
        return "\n".join(f"=== {c} ===\n{self.log_tail(c)}" for c in self.processes)

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {process.returncode}\n{self.diagnostics()}")


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float, instance: AirflowInstance) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310 - loopback only
                return
        except OSError:
            instance._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer in {timeout:.0f} s\n{instance.diagnostics()}") from None
            time.sleep(1)


@contextmanager
def running_airflow(
    dags_folder: Path,
    *,
    home: Path,
    sql_alchemy_conn: str,
    plugins_folder: Path | None = None,
    env: dict[str, str] | None = None,
    executor: str = "LocalExecutor",
    parallelism: int = 4,
    components: tuple[str, ...] = COMPONENTS,
) -> Iterator[AirflowInstance]:
    """Start Airflow on 127.0.0.1 with a fresh home; yields an `AirflowInstance`."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    environment = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder or home / "plugins"),
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": "airflow-mlops-tests-only-secret-0123456789",
        "AIRFLOW__API__SECRET_KEY": "airflow-mlops-tests-only-key",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
        **(env or {}),
    }
    instance = AirflowInstance(base_url=base_url, home=home, env=environment)
    migrate = subprocess.run([str(bin_dir / "airflow"), "db", "migrate"], env=environment, capture_output=True,
                             text=True, timeout=600)
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stderr[-4000:]}")
    try:
        for component in components:
            args = [str(bin_dir / "airflow"), component]
            if component == "api-server":
                args += ["--port", str(port), "--host", "127.0.0.1"]
            log = open(home / "logs" / f"{component}.log", "w")  # noqa: SIM115 - closed with the process
            instance.processes[component] = subprocess.Popen(
                args, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_http(f"{base_url}/api/v2/monitor/health", 180, instance)
        yield instance
    finally:
        for process in instance.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in instance.processes.values():
            try:
                process.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
