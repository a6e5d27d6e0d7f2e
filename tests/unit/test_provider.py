"""What Airflow learns from the provider metadata, and the registry connection's Test button."""

from __future__ import annotations

import importlib
import inspect
import json
import sqlite3
from pathlib import Path

import airflow
import jsonschema
import pytest
import sqlalchemy

from airflow_mlops import operators
from airflow_mlops.hooks.registry import MlopsRegistryHook
from airflow_mlops.provider import get_provider_info

INFO = get_provider_info()


def test_the_metadata_matches_airflows_provider_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(INFO, schema)


def test_every_listed_module_and_class_imports_and_is_what_it_claims():
    from airflow.sdk import BaseHook, BaseNotifier, BaseOperator, BaseOperatorLink
    from airflow.triggers.base import BaseTrigger

    kinds = {"operators": BaseOperator, "hooks": BaseHook, "triggers": BaseTrigger}
    for kind, base in kinds.items():
        for entry in INFO[kind]:
            assert entry["integration-name"] in {i["integration-name"] for i in INFO["integrations"]}
            for module in entry["python-modules"]:
                defined = [c for _, c in inspect.getmembers(importlib.import_module(module), inspect.isclass)
                           if issubclass(c, base) and c.__module__ == module]
                assert defined, f"{module} is listed under {kind} but defines no {base.__name__}"
    for path, base in [*((p, BaseNotifier) for p in INFO["notifications"]),
                       *((p, BaseOperatorLink) for p in INFO["extra-links"]),
                       *((c["hook-class-name"], BaseHook) for c in INFO["connection-types"])]:
        module, _, name = path.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), name), base), path


def test_every_exported_operator_lives_in_a_listed_module():
    listed = {m for entry in INFO["operators"] for m in entry["python-modules"]}
    for name in operators.__all__:
        value = getattr(operators, name)
        if inspect.isclass(value) and value.__name__.endswith("Operator") and name != "MlopsBaseOperator":
            assert value.__module__ in listed, f"{name} ({value.__module__}) is not in the provider's operators"


def test_airflow_builds_the_connection_form_from_the_metadata_without_hook_methods():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    assert ProvidersManagerTaskRuntime().hooks["mlops_registry"].hook_name == MlopsRegistryHook.hook_name
    manager = ProvidersManager()
    widgets = manager.connection_form_widgets
    assert widgets["extra__mlops_registry__url"].is_sensitive  # the URL may hold a password
    assert widgets["extra__mlops_registry__dialect"].field["value"] == "postgresql+psycopg2"
    assert manager.field_behaviours["mlops_registry"]["relabeling"] == {"schema": "Database"}
    # The deprecated hook methods are gone, so loading the hook warns of nothing.
    assert "get_ui_field_behaviour" not in MlopsRegistryHook.__dict__
    assert "get_connection_form_widgets" not in MlopsRegistryHook.__dict__


def _connection(monkeypatch: pytest.MonkeyPatch, url: str) -> MlopsRegistryHook:
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_REGISTRY", json.dumps({"conn_type": "mlops_registry", "extra": {"url": url}}))
    return MlopsRegistryHook()


def test_test_connection_reports_a_missing_or_old_schema_without_migrating(tmp_path, monkeypatch):
    from airflow_mlops.registry import ModelRegistry, migrate

    path = tmp_path / "registry.db"
    sqlite3.connect(path).close()
    hook = _connection(monkeypatch, f"sqlite:///{path}")
    ok, message = hook.test_connection()
    assert not ok and "no registry schema" in message and "airflow-mlops db upgrade" in message
    assert migrate.current_revision(sqlalchemy.create_engine(f"sqlite:///{path}")) is None, "not migrated"

    ModelRegistry(f"sqlite:///{path}")  # creates the schema at head
    ok, message = hook.test_connection()
    assert ok and migrate.head_revision() in message

    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '0001'")
    ok, message = hook.test_connection()
    assert not ok and "revision 0001" in message and migrate.head_revision() in message


def test_test_connection_names_an_unreachable_server(monkeypatch):
    hook = _connection(monkeypatch, "postgresql+psycopg2://mlops:secret@127.0.0.1:1/mlops?connect_timeout=2")
    ok, message = hook.test_connection()
    assert not ok and message.startswith("cannot reach the registry")


def test_test_connection_without_a_connection_says_the_embedded_registry_is_used():
    ok, message = MlopsRegistryHook().test_connection()
    assert not ok and "embedded SQLite registry" in message

