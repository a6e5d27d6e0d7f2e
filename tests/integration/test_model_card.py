"""Model cards and training cost: a version trained and evaluated through the steps gets a card (JSON and
HTML) with every section filled from the pipeline file, the registry and its data; promotion shows in
its alias history; a retried training task keeps one cost; a missing card is written again when asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_mlops import steps
from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.data import write_table
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.steps.card import NO_TIME_COLUMN, render_model_card_html
from airflow_mlops.storage import open_store

LINEAGE = {"dag_id": "loans__retrain", "run_id": "manual__1", "task_id": "train"}


def pipeline(**extra):
    return parse_pipeline_config({
        "pipeline": "loans",
        "owner": "credit-risk",
        "description": "Default risk of <small> business loans",
        "intended_use": "rank applications for a second review",
        "limitations": ["trained on one region only", "not for individual credit decisions"],
        "data": {"train": "data/loans.parquet", "target": "defaulted", "ids": ["loan_id"],
                 "features": ["amount", "term", "rate", "segment"]},
        "model": {"flavor": "sklearn", "task": "binary_classification",
                  "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
        "evaluation": {"slices": [{"column": "segment"}]},
        **extra,
    })


def loans(rows: int = 600, dated: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    amount, term, rate = rng.normal(size=rows), rng.normal(size=rows), rng.normal(size=rows)
    frame = pd.DataFrame({
        "loan_id": np.arange(rows), "amount": amount, "term": term, "rate": rate,
        "segment": rng.choice(["retail", "corporate"], size=rows),
        "defaulted": (amount + rate + rng.normal(scale=0.5, size=rows) > 0).astype(int),
    })
    if dated:
        frame["opened"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(rows) % 366, unit="D")
    return frame


@pytest.fixture
def store(mlops_home: Path):
    return open_store(str(mlops_home))


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry()


def train_and_evaluate(config, store, registry, run_id: str = "manual__1"):
    lineage = {**LINEAGE, "run_id": run_id}
    trained = steps.train_and_register(config, store, registry, data_uri=config.data.train,
                                       prefix=f"pipelines/loans/runs/{run_id}/train", lineage=lineage)
    evaluated = steps.evaluate_version(config, store, registry, trained=trained.xcom(), run_id=run_id,
                                       report_path=f"pipelines/loans/runs/{run_id}/evaluate/evaluation.html")
    return trained, evaluated


def test_an_evaluated_version_has_a_card_with_every_section(store, registry):
    config = pipeline()
    write_table(loans(), "data/loans.parquet", store)
    trained, evaluated = train_and_evaluate(config, store, registry)
    version = registry.get_version("loans", 1)
    card = store.read_json(steps.card_path("loans", 1, "json"))
    assert set(card) >= {"purpose", "training_data", "metrics", "evaluation", "explanations", "gate", "lineage",
                         "alias_history", "cost"}
    assert card["model"] | {"created_at": None} == {
        "name": "loans", "version": 1, "flavor": "sklearn", "task": "binary_classification", "status": "active",
        "aliases": [], "created_at": None}
    assert card["purpose"] == {"description": "Default risk of <small> business loans", "owner": "credit-risk",
                               "intended_use": "rank applications for a second review",
                               "limitations": ["trained on one region only", "not for individual credit decisions"]}
    data = card["training_data"]
    train = trained.datasets["train"]
    assert data["source"] == "data/loans.parquet" and data["uri"] == train["uri"]
    assert data["fingerprint"] == train["fingerprint"] and len(data["fingerprint"]) == 64
    assert data["rows"] == train["rows"] and 300 < data["rows"] < 600
    assert set(data["splits"]) == {"train", "validation", "test"}
    assert sum(s["rows"] for s in data["splits"].values()) == 600
    [opened] = data["time_range"]
    assert opened["column"] == "opened" and "2024-01-01" <= opened["start"][:10] < opened["end"][:10] <= "2024-12-31"
    assert data["time_range_note"] is None
    metrics = card["metrics"]
    assert 0.5 < metrics["test"]["roc_auc"] <= 1.0 and set(metrics["train"]) == set(metrics["validation"])
    assert metrics["test"] == registry.evaluations("loans", 1)[-1].metrics
    assert set(card["evaluation"]["slice_metrics"]) == {"segment=retail", "segment=corporate"}
    assert card["evaluation"]["dataset_fingerprint"] == trained.datasets["test"]["fingerprint"]
    assert card["gate"]["passed"] is evaluated.gate.passed and card["gate"]["summary"] == evaluated.gate.summary
    assert card["lineage"]["artifact_sha256"] == version.artifact_sha256 and card["lineage"]["run_id"] == "manual__1"
    assert card["lineage"]["library_versions"]["scikit-learn"]
    assert card["cost"] == version.cost and card["cost"]["cpu_seconds"] > 0 and card["cost"]["wall_seconds"] > 0
    assert card["cost"]["peak_memory_bytes"] > 10 * 2**20
    assert card["alias_history"] == []
    html = store.read_bytes(steps.card_path("loans", 1, "html")).decode()
    assert "Default risk of &lt;small&gt; business loans" in html and "<small>" not in html
    for section in ("purpose", "training-data", "metrics", "explanations", "gate", "lineage", "alias-history", "cost"):
        assert f'<section id="{section}">' in html
    assert "<script" not in html

    steps.promote_version(config, registry, evaluated=evaluated.xcom(), actor="ana", reason="beats the baseline",
                          dag_id="loans__retrain", run_id="manual__1", store=store)
    card = store.read_json(steps.card_path("loans", 1, "json"))
    assert [(h["alias"], h["kind"], h["to_version"], h["actor"], h["reason"]) for h in card["alias_history"]] == [
        ("champion", "set", 1, "ana", "beats the baseline")]
    assert card["model"]["aliases"] == ["champion"]
    assert card["gate"]["summary"] == evaluated.gate.summary, "the gate's words survive a refresh"
    assert "beats the baseline" in store.read_bytes(steps.card_path("loans", 1, "html")).decode()


def test_data_without_a_date_column_says_so_and_a_missing_card_is_written_again(store, registry):
    config = pipeline()
    write_table(loans(dated=False), "data/loans.parquet", store)
    train_and_evaluate(config, store, registry)
    for suffix in ("json", "html"):
        store.delete(steps.card_path("loans", 1, suffix))
    card = steps.model_card(None, registry, store, "loans", 1)
    assert card["training_data"]["time_range"] == [] and card["training_data"]["time_range_note"] == NO_TIME_COLUMN
    assert card["purpose"]["note"] == "no pipeline file was found for this model"
    assert store.exists(steps.card_path("loans", 1, "html")) and store.exists(steps.card_path("loans", 1, "json"))
    # A rollback moves the alias back: both versions' cards hear of it when the card is next asked for.
    registry.set_alias("loans", "champion", 1, reason="first")
    assert steps.model_card(config, registry, store, "loans", 1)["alias_history"][0]["reason"] == "first"
    assert store.read_json(steps.card_path("loans", 1, "json"))["purpose"]["owner"] == "credit-risk"


def test_a_retried_training_task_keeps_one_cost(store, registry):
    config = pipeline()
    write_table(loans(), "data/loans.parquet", store)
    trained, _ = train_and_evaluate(config, store, registry)
    first = registry.get_version("loans", 1).cost
    again = steps.train_and_register(config, store, registry, data_uri=config.data.train,
                                     prefix="pipelines/loans/runs/manual__1/train", lineage=LINEAGE)
    assert again.model == trained.model and registry.get_version("loans", 1).cost == first
    # The model file of the first try is gone: the retry trains again and its cost replaces the first's.
    store.delete(registry.get_version("loans", 1).artifact_uri)
    steps.train_and_register(config, store, registry, data_uri=config.data.train,
                             prefix="pipelines/loans/runs/manual__1/train", lineage=LINEAGE)
    versions = registry.search_versions("loans")
    assert [v.version for v in versions] == [1]
    assert set(versions[0].cost) == {"wall_seconds", "cpu_seconds", "peak_memory_bytes", "peak_memory_scope"}
    assert versions[0].cost["peak_memory_scope"] == "task"


def test_the_card_renders_whatever_the_evaluation_record_holds():
    card = {
        "model": {"name": "m", "version": 2, "flavor": "xgboost", "task": "multiclass_classification",
                  "status": "active", "aliases": [], "created_at": "2026-01-01T00:00:00+00:00"},
        "purpose": {"description": "", "intended_use": "", "limitations": [], "owner": "me"},
        "training_data": {"source": None, "uri": None, "fingerprint": None, "rows": None, "columns": None,
                          "splits": {}, "time_range": [], "time_range_note": NO_TIME_COLUMN},
        "metrics": {"train": {}, "validation": {}, "test": {"accuracy": 0.9}},
        "evaluation": {"at": "2026-01-01T00:00:00+00:00", "run_id": None, "dataset_fingerprint": None,
                       "passed": False, "compared_to_version": None, "report_uri": None,
                       "slice_metrics": {"region=<north>": {"rows": 40, "accuracy": 0.8}},
                       "fairness": {"sex": {"demographic_parity_difference": 0.12, "passed": False}},
                       "per_class": {"a": {"precision": 0.9, "recall": 0.7}, "b": {"precision": 0.5}},
                       "diagnostics": {"calibration": [0.1, 0.2]}},
        "explanations": {"importance": {"income": 0.6, "age": 0.4}},
        "gate": {"passed": False, "summary": "1 check failed", "failures": ["fairness: sex gap 0.12 > 0.1"],
                 "policy": "fail", "compared_to_version": None, "report_uri": None},
        "lineage": {"dag_id": None, "run_id": None, "task_id": None, "code_version": None, "created_by": None,
                    "artifact_uri": "/a", "artifact_sha256": "0" * 64, "params": {}, "library_versions": {}},
        "alias_history": [],
        "cost": None,
    }
    html = render_model_card_html(card)
    assert "region=&lt;north&gt;" in html and "<north>" not in html
    for key in ("fairness", "per_class", "diagnostics"):
        assert f'data-key="{key}"' in html
    assert "demographic_parity_difference" in html and "<th>recall</th>" in html and "income" in html
    assert "fairness: sex gap 0.12 &gt; 0.1" in html and "Not recorded" in html


class _Viewer:
    def get_name(self) -> str:
        return "viewer"


def test_the_registry_app_serves_the_card_and_its_json_to_logged_in_users(store, registry, tmp_path, monkeypatch):
    import json

    import yaml
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from airflow_mlops.ui.app import create_app

    config = pipeline()
    write_table(loans(), "data/loans.parquet", store)
    train_and_evaluate(config, store, registry)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "loans.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIGS", str(configs))
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_REGISTRY", json.dumps(
        {"conn_type": "mlops_registry", "extra": {"url": registry.url}}))
    app = create_app()
    client = TestClient(app)
    for path in ("/models/loans/versions/1/card", "/api/models/loans/versions/1/card"):
        assert client.get(path).status_code == 401, path
    app.dependency_overrides[get_user] = _Viewer
    page = client.get("/models/loans/versions/1/card")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("sandbox") and "script" not in page.headers["content-security-policy"]
    assert '<section id="training-data">' in page.text and "credit-risk" in page.text
    card = client.get("/api/models/loans/versions/1/card").json()
    assert card["model"]["version"] == 1 and card["purpose"]["owner"] == "credit-risk"
    assert client.get("/models/loans/versions/9/card").status_code == 404
    assert client.get("/api/models/nope/versions/1/card").status_code == 404
    assert 'id="card-link" href="/mlops/models/loans/versions/1/card"' in client.get("/models/loans/versions/1").text
    model = client.get("/api/models/loans").json()
    assert "training_cost_chart" not in model and model["versions"][0]["cost"] == card["cost"]


def test_the_approval_form_links_the_waiting_versions_card(tmp_path):
    from airflow_mlops.refs import ModelRef
    from airflow_mlops.steps.evaluate import approval_links

    links = approval_links(ModelRef(name="loans", version=3), "/mlops")
    assert "[Model card](/mlops/models/loans/versions/3/card)" in links
    assert "[Version page](/mlops/models/loans/versions/3)" in links
