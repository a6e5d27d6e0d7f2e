"""A real Airflow 3 on 127.0.0.1 for end-to-end tests: api-server, scheduler, dag-processor, triggerer.

`running_airflow()` gives each instance its own AIRFLOW_HOME and metadata
database (a SQLite file in the home unless a URL is given), configures Airflow
only through environment variables, starts every component as its own process
(logs in `<home>/logs/<component>.log`), waits until the api-server answers and
the scheduler, dag-processor and triggerer report healthy, and stops them all
afterwards, also when a test fails. The REST API v2 is reached with JWTs from
the simple auth manager, as `admin` (role admin) or `viewer` (role viewer,
read-only). Importing this module starts nothing.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_mlops.errors import MlopsError

#: Simple-auth-manager users the harness creates: name -> role.
USERS = {"admin": "admin", "viewer": "viewer", "alice": "user", "bob": "user"}
#: Their passwords, written to the passwords file before any component starts.
PASSWORDS = {"admin": "admin-password", "viewer": "viewer-password", "alice": "alice-password",
             "bob": "bob-password"}
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Name of each component in the answer of /api/v2/monitor/health.
_HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
# Inherited variables that would make the instance read the caller's Airflow instead of its own.
_FOREIGN_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")
_FOREIGN_NAMES = ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
_FINISHED_RUN_STATES = ("success", "failed")


class ApiError(MlopsError):
    """The Airflow REST API answered with a status other than 2xx; `status` holds it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class AirflowInstance:
    """A running Airflow: its URL, home, environment and component processes."""

    base_url: str
    home: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    # -- REST API -----------------------------------------------------------------------------

    def token(self, user: str = "admin", password: str | None = None) -> str:
        """A JWT for `user` from the simple auth manager (`POST /auth/token`); cached per user."""
        password = PASSWORDS[user] if password is None else password
        if (user, password) not in self._tokens:
            answer = self._request("POST", "/auth/token", {"username": user, "password": password}, token=None)
            self._tokens[user, password] = answer["access_token"]
        return self._tokens[user, password]

    def api(self, method: str, path: str, json: Any = None, *, user: str = "admin") -> Any:
        """Call the REST API as `user`; returns the decoded JSON answer, raises `ApiError` on non-2xx."""
        return self._request(method, path, json, token=self.token(user))

    def _request(self, method: str, path: str, body: Any, *, token: str | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:4000]
            raise ApiError(exc.code, f"{method} {path} -> {exc.code}: {detail}") from None
        return json.loads(text) if text else None

    # -- DAGs and runs ------------------------------------------------------------------------

    def wait_for_dag(self, dag_id: str, timeout: float = 180, unpause: bool = True) -> dict[str, Any]:
        """Wait until the dag-processor has stored `dag_id`, then unpause it; returns the DAG."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                dag = self.api("GET", f"/api/v2/dags/{_quote(dag_id)}")
                break
            except ApiError as exc:
                if exc.status != 404:
                    raise
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"DAG {dag_id} did not appear within {timeout:.0f} s; import errors: "
                    f"{json.dumps(self.import_errors(), indent=1)}\n{self.diagnostics()}"
                )
            time.sleep(1)
        if unpause and dag.get("is_paused"):
            dag = self.api("PATCH", f"/api/v2/dags/{_quote(dag_id)}", {"is_paused": False})
        return dag

    def trigger(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        logical_date: datetime | str | None = None,
        *,
        user: str = "admin",
    ) -> str:
        """Start a manual run (`conf` overrides the DAG's Params); returns its run_id."""
        if isinstance(logical_date, datetime):
            if logical_date.tzinfo is None:
                raise ValueError(f"logical_date {logical_date} must carry a timezone")
            logical_date = logical_date.isoformat()
        body = {"logical_date": logical_date, "conf": conf or {}}
        return self.api("POST", f"/api/v2/dags/{_quote(dag_id)}/dagRuns", body, user=user)["dag_run_id"]

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of `dag_id`, newest first."""
        path = f"/api/v2/dags/{_quote(dag_id)}/dagRuns?order_by=-run_after&limit=100"
        return self.api("GET", path)["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances?limit=1000"
        return self.api("GET", path)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The value a task pushed to XCom, as JSON."""
        path = (
            f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances/{_quote(task_id)}"
            f"/xcomEntries/{_quote(key)}?map_index={map_index}&deserialize=true"
        )
        return self.api("GET", path)["value"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """Wait until the run succeeds; returns "success". On failure or timeout raise an
        AssertionError with the task states, the failed tasks' logs and the component logs."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.api("GET", f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}")["state"]
            if state in _FINISHED_RUN_STATES or time.monotonic() > deadline:
                break
            self._check_alive()
            time.sleep(1)
        if state != "success":
            ending = state if state in _FINISHED_RUN_STATES else f"still {state} after {timeout:.0f} s"
            raise AssertionError(
                f"{dag_id} run {run_id}: {ending}\n{self.run_report(dag_id, run_id)}\n{self.diagnostics()}"
            )
        return state

    def wait_for_run_created(self, dag_id: str, run_type: str = "asset_triggered", timeout: float = 180) -> str:
        """Wait until Airflow itself creates a run of `run_type` (e.g. from an Asset event); returns
        the run_id of the first such run."""
        deadline = time.monotonic() + timeout
        while True:
            runs = [run for run in self.dag_runs(dag_id) if run["run_type"] == run_type]
            if runs:
                return runs[-1]["dag_run_id"]
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"no {run_type} run of {dag_id} within {timeout:.0f} s\n{self.diagnostics()}")
            time.sleep(1)

    def run_report(self, dag_id: str, run_id: str, log_chars: int = 4000) -> str:
        """Each task's state, and the end of the log of every task that did not succeed or skip."""
        lines = [f"task instances of {dag_id} / {run_id}:"]
        log_root = Path(self.env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
        for ti in self.task_instances(dag_id, run_id):
            lines.append(f"  {ti['task_id']}[{ti['map_index']}]: {ti['state']} (try {ti['try_number']})")
            if ti["state"] in ("success", "skipped"):
                continue
            folder = log_root / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
            if ti["map_index"] >= 0:
                folder = folder / f"map_index={ti['map_index']}"
            logs = sorted(folder.glob("attempt=*.log"))
            if not logs:
                lines.append(f"  (no log file under {folder})")
            for log in logs:
                lines.append(f"  --- {log}\n{log.read_text(errors='replace')[-log_chars:]}")
        return "\n".join(lines)

    def import_errors(self) -> list[dict[str, Any]]:
        """DAG files that failed to parse, with their tracebacks."""
        return self.api("GET", "/api/v2/importErrors?limit=1000")["import_errors"]

    # -- component logs and liveness ------------------------------------------------------

    def log_tail(self, component: str, n: int = 40) -> str:
        """The last `n` lines of `<home>/logs/<component>.log`."""
        path = self.home / "logs" / f"{component}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def diagnostics(self, n: int = 40) -> str:
        """The tail of every component's log, for failure messages."""
        return "\n".join(f"=== airflow {name} (last {n} lines) ===\n{self.log_tail(name, n)}" for name in self.processes)

    def stop(self, *components: str) -> None:
        """Stop these components (e.g. the scheduler and triggerer, to test what happens while they are down)."""
        _stop({name: self.processes.pop(name) for name in components})

    def start(self, *components: str, timeout: float = 180) -> None:
        """Start these components again, logging after what they logged before, and wait until healthy."""
        port = int(self.base_url.rsplit(":", 1)[1])
        for name in components:
            with (self.home / "logs" / f"{name}.log").open("a") as log:
                self.processes[name] = subprocess.Popen(
                    _command(name, port), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
        _wait_healthy(self, components, timeout)

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {process.returncode}\n{self.diagnostics(80)}")


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(
    home: Path, dags_folder: Path, plugins_folder: Path, executor: str, sql_alchemy_conn: str,
    parallelism: int, port: int, passwords_file: Path, extra: dict[str, str],
) -> dict[str, str]:
    inherited = {
        name: value for name, value in os.environ.items()
        if not name.startswith(_FOREIGN_PREFIXES) and name not in _FOREIGN_NAMES
    }
    base_url = f"http://127.0.0.1:{port}"
    return {
        **inherited,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder),
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        # The default (getfqdn) asks DNS, which can stall for seconds on a machine without network.
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
        # Task processes started by the executor report back through the api-server's Execution API.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": "airflow-mlops-test-harness-secret-key",
        # 64 bytes or more: PyJWT warns in every log about shorter HMAC keys.
        "AIRFLOW__API_AUTH__JWT_SECRET": "airflow-mlops-test-harness-jwt-secret-" + "0123456789abcdef" * 2,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        **extra,
    }


def worker_hostname() -> str:
    """Airflow's `core.hostname_callable` for harness workers: the name the harness gave the worker."""
    return os.environ.get("AIRFLOW_MLOPS_TEST_HOSTNAME") or socket.gethostname()


def _worker_environment(environment: dict[str, str], folder: Path, name: str) -> dict[str, str]:
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    return {
        **environment,
        "HOME": str(folder),
        "TMPDIR": str(folder / "tmp"),
        "AIRFLOW_MLOPS_TEST_HOSTNAME": name,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
    }


def _wait_workers_ready(instance: AirflowInstance, count: int, timeout: float) -> None:
    """Until every Celery worker's log says it is ready to take tasks."""
    deadline = time.monotonic() + timeout
    for number in range(1, count + 1):
        log = instance.home / "logs" / f"celery-worker-{number}.log"
        while " ready." not in log.read_text(errors="replace"):
            instance._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"Celery worker-{number} not ready within {timeout:.0f} s:\n"
                                     f"{instance.log_tail(f'celery-worker-{number}', 60)}")
            time.sleep(1)


def _command(component: str, port: int) -> list[str]:
    command = [sys.executable, "-m", "airflow", component]
    if component == "api-server":
        command += ["--port", str(port), "--host", "127.0.0.1"]
    if component in ("scheduler", "triggerer"):
        # The log server would listen on every interface at a fixed port; task logs are local files here.
        command.append("--skip-serve-logs")
    return command


def _wait_healthy(instance: AirflowInstance, components: tuple[str, ...], timeout: float) -> None:
    """Until the api-server answers /api/v2/monitor/health and every started component reports healthy."""
    expected = [_HEALTH_KEYS[name] for name in components if name in _HEALTH_KEYS]
    deadline = time.monotonic() + timeout
    health: Any = "no answer yet"
    while True:
        try:
            health = instance._request("GET", "/api/v2/monitor/health", None, token=None)
            statuses = [health["metadatabase"]["status"], *((health.get(k) or {}).get("status") for k in expected)]
            if all(status == "healthy" for status in statuses):
                return
        except (OSError, ApiError) as exc:
            health = repr(exc)
        instance._check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"Airflow not healthy within {timeout:.0f} s: {health}\n{instance.diagnostics(80)}")
        time.sleep(1)


def _stop(processes: dict[str, subprocess.Popen], grace: float = 30) -> None:
    """SIGTERM each component's process group, then SIGKILL whatever of its process tree is left."""
    import psutil

    trees: list[psutil.Process] = []
    for process in processes.values():
        try:
            parent = psutil.Process(process.pid)
            trees += [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass  # the leader is gone, yet its group may still hold task processes
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    _, alive = psutil.wait_procs(trees, timeout=grace)
    for leftover in alive:
        try:
            leftover.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=10)
    for process in processes.values():
        process.wait(timeout=10)


@contextmanager
def running_airflow(
    dags_folder: Path,
    *,
    home: Path,
    plugins_folder: Path | None = None,
    env: dict[str, str] | None = None,
    executor: str = "LocalExecutor",
    sql_alchemy_conn: str | None = None,
    parallelism: int = 4,
    components: tuple[str, ...] = COMPONENTS,
    startup_timeout: float = 180,
    celery_workers: int = 0,
    worker_concurrency: int = 1,
) -> Iterator[AirflowInstance]:
    """Run Airflow on 127.0.0.1 with a fresh home at `home`; yields an `AirflowInstance`.

    `sql_alchemy_conn` defaults to a SQLite file in `home`. `env` is added last, so it
    can override any setting (e.g. `AIRFLOW__CORE__...`) and pass variables to tasks.
    `celery_workers` starts that many `airflow celery worker` processes (for the
    CeleryExecutor; broker and result backend come in `env`), named `worker-1`,
    `worker-2`, ... as Airflow's hostname, each with its own HOME and TMPDIR so
    that nothing on the local disk is shared between them.
    """
    unknown = set(components) - set(COMPONENTS)
    if unknown or "api-server" not in components:
        raise ValueError(f"components {components}: expected the api-server and some of {COMPONENTS}")
    home = Path(home).resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    plugins = Path(plugins_folder) if plugins_folder else home / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    passwords_file = home / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps(PASSWORDS))
    port = _free_port()
    environment = _environment(
        home, Path(dags_folder).resolve(), plugins, executor,
        sql_alchemy_conn or f"sqlite:///{home / 'airflow.db'}", parallelism, port, passwords_file, env or {},
    )
    instance = AirflowInstance(base_url=environment["AIRFLOW__API__BASE_URL"], home=home, env=environment)
    with (home / "logs" / "db-migrate.log").open("w") as log:
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=environment, stdout=log,
            stderr=subprocess.STDOUT, timeout=600, check=False,
        )
    if migrate.returncode != 0:
        raise AssertionError(f"airflow db migrate failed ({migrate.returncode}):\n{instance.log_tail('db-migrate', 60)}")
    with ExitStack() as logs:
        try:
            for component in components:
                log = logs.enter_context((home / "logs" / f"{component}.log").open("w"))
                instance.processes[component] = subprocess.Popen(
                    _command(component, port), env=environment, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            for number in range(1, celery_workers + 1):
                name = f"worker-{number}"
                log = logs.enter_context((home / "logs" / f"celery-{name}.log").open("w"))
                instance.processes[f"celery-{name}"] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", "celery", "worker", "--celery-hostname", f"{name}@%h",
                     "--concurrency", str(worker_concurrency), "--skip-serve-logs", "--without-gossip",
                     "--without-mingle"],
                    env=_worker_environment(environment, home / "workers" / name, name), stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                )
            _wait_healthy(instance, components, startup_timeout)
            _wait_workers_ready(instance, celery_workers, startup_timeout)
            yield instance
        finally:
            _stop(instance.processes)
