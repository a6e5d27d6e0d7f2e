"""The docker stack's structure: no Docker engine runs in CI, so the compose file is checked as data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker-1", "airflow-worker-2"}
LONG_RUNNING = AIRFLOW_SERVICES | {"postgres", "redis", "minio"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())


def _env(service: dict) -> dict:
    return service.get("environment", {})


def test_every_service_of_the_topology_is_there(compose):
    assert set(compose["services"]) == LONG_RUNNING | {"minio-init", "airflow-init"}


def test_exactly_two_celery_workers_with_distinct_hostnames(compose):
    workers = {name: s for name, s in compose["services"].items() if "celery worker" in str(s.get("command", ""))}
    assert set(workers) == {"airflow-worker-1", "airflow-worker-2"}
    hostnames = {s["hostname"] for s in workers.values()}
    celery_names = {re.search(r"--celery-hostname (\S+)", s["command"]).group(1) for s in workers.values()}
    assert len(hostnames) == 2 and len(celery_names) == 2


def test_airflow_services_share_one_configuration(compose):
    airflow = [compose["services"][name] for name in AIRFLOW_SERVICES | {"airflow-init"}]
    shared = ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__API_AUTH__JWT_SECRET",
              "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW_CONN_MLOPS_REGISTRY",
              "AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_MLOPS_HOME", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
    for key in shared:
        values = {_env(service).get(key) for service in airflow}
        assert len(values) == 1 and None not in values, key
    env = _env(airflow[0])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW_MLOPS_HOME"].startswith("s3://")  # nothing local is shared between workers
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert "postgresql" in env["AIRFLOW_CONN_MLOPS_REGISTRY"]
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")


def test_long_running_services_have_health_checks_and_dependencies_exist(compose):
    services = compose["services"]
    for name in LONG_RUNNING:
        assert "test" in services[name].get("healthcheck", {}), name
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            wanted = "service_completed_successfully" if dependency.endswith("-init") else "service_healthy"
            assert rule["condition"] == wanted, (name, dependency)


def test_dags_and_plugins_are_mounted_and_the_bucket_is_created(compose):
    for name in AIRFLOW_SERVICES:
        volumes = compose["services"][name]["volumes"]
        assert "../dags:/opt/airflow/dags" in volumes and "../plugins:/opt/airflow/plugins" in volumes
        assert (DOCKER / "../dags").resolve().is_dir() and (DOCKER / "../plugins").resolve().is_dir()
    bucket = compose["services"]["airflow-worker-1"]["environment"]["AIRFLOW_MLOPS_HOME"].split("/")[2]
    assert f"local/{bucket}" in compose["services"]["minio-init"]["entrypoint"]
    init = compose["services"]["postgres"]["volumes"]
    assert any("postgres-init.sql" in v for v in init)
    registry_db = compose["services"]["airflow-init"]["environment"]["AIRFLOW_CONN_MLOPS_REGISTRY"].rsplit("/", 1)[1]
    assert f"CREATE DATABASE {registry_db.split(chr(34))[0]}" in (DOCKER / "postgres-init.sql").read_text()


def test_the_names_in_the_stack_are_the_names_the_package_reads(compose):
    source = "\n".join(p.read_text() for p in (REPO / "src" / "airflow_mlops").rglob("*.py"))
    env = compose["services"]["airflow-apiserver"]["environment"]
    for variable in ("AIRFLOW_MLOPS_HOME", "AIRFLOW_MLOPS_CONFIGS"):
        assert variable in env and f'"{variable}"' in source, variable
    assert 'default_conn_name = "mlops_registry"' in source and "AIRFLOW_CONN_MLOPS_REGISTRY" in env
    assert 'aws_conn_id: str | None = "aws_default"' in source and "AIRFLOW_CONN_AWS_DEFAULT" in env
    init = "\n".join(compose["services"]["airflow-init"]["command"])
    from airflow_mlops.cli import build_parser

    parser = build_parser()
    for line in init.splitlines():
        if line.strip().startswith("airflow-mlops "):
            parser.parse_args(line.split()[1:])  # exits on an unknown command or flag


def test_the_image_is_the_official_airflow_33_with_our_pins():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.\d+-python3\.11$", dockerfile, re.M)
    assert "-c /opt/airflow-mlops/constraints.txt" in dockerfile
    assert re.search(r"^USER airflow$", dockerfile, re.M)  # pip runs as the airflow user, as the image requires
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "constraints.txt").read_text(), re.M).group(1)
    assert dockerfile.split("apache/airflow:")[1].startswith(pinned + "-")
