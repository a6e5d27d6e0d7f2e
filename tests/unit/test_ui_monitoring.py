"""The monitoring page and its API: records made through the registry, drawn and served by the registry app."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage import open_store
from airflow_mlops.ui.views import RegistryViews

MODEL = "churn"
START = datetime(2025, 3, 1, tzinfo=timezone.utc)
PIPELINE = {
    "pipeline": MODEL,
    "data": {"train": "data/churn/train.parquet", "target": "churned", "ids": ["customer_id"]},
    "model": {"flavor": "xgboost", "task": "binary_classification"},
    "evaluation": {"primary_metric": "roc_auc", "metrics": ["roc_auc", "accuracy"]},
    "monitoring": {
        "labels": "labels/churn/",
        "thresholds": {"roc_auc": {"min": 0.8}},
        "max_drop": {"amount": 0.05},
    },
}


def _day(n: int) -> datetime:
    return START + timedelta(days=n)


@pytest.fixture
def registry(mlops_home: Path) -> ModelRegistry:
    """`churn` v1 and v2 (champion, roc_auc 0.9 on its test set), with a month of monitoring records."""
    registry = ModelRegistry(f"sqlite:///{mlops_home}/registry.db", upgrade=True)
    for version in (1, 2):
        registry.register_version(
            MODEL, artifact_uri=f"{mlops_home}/models/{version}.ubj", artifact_sha256="0" * 64, flavor="xgboost",
            task="binary_classification", params={}, metrics={"validation_roc_auc": 0.88},
            dag_id="churn__retrain", run_id=f"manual__v{version}", task_id="train",
        )
    registry.record_evaluation(MODEL, 2, metrics={"roc_auc": 0.9, "accuracy": 0.85}, passed=True)
    registry.set_alias(MODEL, "champion", 2, actor="airflow", reason="first")
    for day, (auc, passed) in enumerate([(0.89, True), (0.86, True), (0.78, False)]):
        registry.record_performance(
            MODEL, 2, kind="realized", rows=1000, labelled_rows=800 - day * 200, coverage=0.8 - day * 0.2,
            metrics={"roc_auc": auc, "accuracy": 0.8}, period_start=_day(day * 7), period_end=_day(day * 7 + 7),
            passed=passed, run_id=f"scheduled__{day}", dag_id="churn__monitor",
            slice_metrics={"plan=basic": {"rows": 300, "roc_auc": 0.7, "accuracy": 0.75},
                           "plan=premium": {"rows": 100, "roc_auc": 0.93, "accuracy": 0.9}},
            summary="roc_auc 0.78 below the threshold min 0.8" if not passed else "",
        )
    for day, auc in enumerate([0.88, 0.84]):
        registry.record_performance(
            MODEL, 2, kind="estimated", rows=1000, metrics={"roc_auc": auc}, bands={"roc_auc": [auc - 0.03, auc + 0.03]},
            period_end=_day(day * 10 + 3), run_id=f"scored__{day}", dag_id="churn__batch_inference",
        )
    registry.record_drift(MODEL, version=2, drift_share=0.2, drifted_columns=["tenure"], passed=True)
    registry.record_drift(MODEL, version=2, drift_share=1.0, drifted_columns=["prediction"], passed=False,
                          kind="prediction")
    return registry


def _scoring_run(registry: ModelRegistry, store, run: str, rows: int) -> str:
    manifest = store.write_json(f"predictions/churn/{run}/_manifest.json", {"parts": [], "rows": rows})
    registry.record_scoring_run(MODEL, 2, dag_id="churn__batch_inference", run_id=run, manifest_uri=manifest.uri,
                                output_prefix=f"{store.root}/predictions/churn/{run}", rows=rows, seconds=12.5,
                                committed_at=_day(3))
    return manifest.uri


def _views(registry: ModelRegistry, mlops_home: Path, pipeline: dict | None = PIPELINE) -> RegistryViews:
    pipelines = {MODEL: parse_pipeline_config(pipeline)} if pipeline else {}
    return RegistryViews(registry, open_store(str(mlops_home)), pipelines)


def _series(svg: str, name: str) -> str:
    found = re.search(rf'<g class="series [^"]*" data-series="{name}">(.*?)</g>', svg)
    assert found, f"no series {name!r} in the chart"
    return found.group(1)


# ---------------------------------------------------------------------- view


def test_performance_chart_draws_both_kinds_the_limits_and_the_estimate_band(registry, mlops_home):
    monitoring = _views(registry, mlops_home).monitoring(MODEL)

    assert monitoring["configured"] and monitoring["champion_version"] == 2
    assert monitoring["metrics"] == ["roc_auc", "accuracy"]  # the primary metric first
    lines = {line["name"]: line["value"] for line in monitoring["reference_lines"]["roc_auc"]}
    assert lines == {"champion v2 test": 0.9, "allowed drop": pytest.approx(0.85), "threshold min": 0.8}
    assert [r["metrics"]["roc_auc"] for r in monitoring["realized"]] == [0.89, 0.86, 0.78]
    assert [r["bands"]["roc_auc"] for r in monitoring["estimated"]] == [pytest.approx([0.85, 0.91]), pytest.approx([0.81, 0.87])]

    svg = monitoring["charts"]["performance"]["roc_auc"]
    realized, estimated = _series(svg, "realized"), _series(svg, "estimated")
    assert realized.count("<circle") == 3 and realized.count('class="breach"') == 1
    assert estimated.count("<circle") == 2 and estimated.count('class="no-verdict"') == 2
    assert '<polygon class="band"' in estimated and estimated.count('class="whisker"') == 2
    assert "(band 0.85 to 0.91)" in estimated
    for name in ("champion v2 test: 0.9", "allowed drop: 0.85", "threshold min: 0.8"):
        assert f"<title>{name}</title>" in svg
    # max_drop applies to every monitored metric; accuracy has no absolute threshold.
    assert [(line["style"], line["value"]) for line in monitoring["reference_lines"]["accuracy"]] == [
        ("champion", 0.85), ("allowed-drop", pytest.approx(0.8))]


def test_coverage_slices_and_drift_kinds(registry, mlops_home):
    monitoring = _views(registry, mlops_home).monitoring(MODEL)

    coverage = _series(monitoring["charts"]["coverage"], "coverage")
    assert coverage.count("<circle") == 3
    assert monitoring["latest_slices"] == [
        {"slice": "plan=basic", "rows": 300, "metrics": {"roc_auc": 0.7, "accuracy": 0.75}},
        {"slice": "plan=premium", "rows": 100, "metrics": {"roc_auc": 0.93, "accuracy": 0.9}},
    ]
    drift = monitoring["charts"]["drift"]
    assert _series(drift, "data drift").count("<circle") == 1
    prediction = _series(drift, "prediction drift")
    assert prediction.count('class="breach"') == 1
    assert [d["kind"] for d in monitoring["drift"]] == ["data", "prediction"]


def test_max_drop_relative_moves_the_limit_in_the_metrics_bad_direction(registry, mlops_home):
    registry.record_evaluation(MODEL, 2, metrics={"log_loss": 0.4}, passed=True)
    registry.record_performance(MODEL, 2, kind="realized", rows=10, metrics={"log_loss": 0.45})
    pipeline = {**PIPELINE, "evaluation": {"primary_metric": "log_loss", "metrics": ["log_loss"]},
                "monitoring": {"max_drop": {"amount": 0.25, "relative": True}}}
    lines = _views(registry, mlops_home, pipeline).monitoring(MODEL)["reference_lines"]["log_loss"]
    assert {line["name"]: line["value"] for line in lines} == {
        "champion v2 test": 0.4, "allowed drop": pytest.approx(0.5)}  # lower is better: 0.4 + 25%


def test_without_a_pipeline_file_only_the_champion_line_is_drawn(registry, mlops_home):
    monitoring = _views(registry, mlops_home, pipeline=None).monitoring(MODEL)
    assert not monitoring["configured"] and not monitoring["thresholds_known"]
    assert monitoring["metrics"] == ["roc_auc", "accuracy"]  # from the records
    assert [line["name"] for line in monitoring["reference_lines"]["roc_auc"]] == ["champion v2 test"]


def test_a_model_without_records_has_empty_charts(mlops_home):
    registry = ModelRegistry(f"sqlite:///{mlops_home}/registry.db", upgrade=True)
    registry.register_version(MODEL, artifact_uri="m.ubj", artifact_sha256="0" * 64, flavor="xgboost",
                              task="binary_classification", params={}, metrics={})
    monitoring = _views(registry, mlops_home, pipeline={**PIPELINE, "monitoring": None}).monitoring(MODEL)
    assert not monitoring["configured"] and monitoring["thresholds_known"]
    assert monitoring["realized"] == monitoring["scoring_runs"] == monitoring["latest_slices"] == []
    assert "no data yet" in monitoring["charts"]["coverage"] and "no data yet" in monitoring["charts"]["drift"]


def test_manifests_are_served_only_from_inside_the_root(registry, mlops_home, tmp_path):
    views = _views(registry, mlops_home)
    uri = _scoring_run(registry, views.store, "scheduled__1", 500)
    assert json.loads(views.manifest(uri)) == {"parts": [], "rows": 500}
    (tmp_path / "_manifest.json").write_text("{}")
    (mlops_home / "config.json").write_text("{}")
    from airflow_mlops.ui.views import ArtifactRefusedError

    for refused in (str(tmp_path / "_manifest.json"), f"{mlops_home}/../_manifest.json", str(mlops_home / "config.json"),
                    uri.replace("_manifest.json", "part-00000.parquet")):
        with pytest.raises(ArtifactRefusedError):
            views.manifest(refused)


# ---------------------------------------------------------------------- app


class _User:
    def get_name(self) -> str:
        return "viewer"


@pytest.fixture
def client(registry, mlops_home, tmp_path, monkeypatch):
    """The registry app in-process; with `authenticated` the Airflow user check answers a logged-in viewer."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from airflow_mlops.ui.app import create_app

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "churn.yaml").write_text(yaml.safe_dump(PIPELINE))
    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIGS", str(configs))
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_REGISTRY", json.dumps(
        {"conn_type": "mlops_registry", "extra": {"url": f"sqlite:///{mlops_home}/registry.db"}}))
    app = create_app()
    client = TestClient(app)
    client.authenticate = lambda: app.dependency_overrides.__setitem__(get_user, _User)
    return client


def test_every_monitoring_route_refuses_a_caller_without_a_token(client, registry, mlops_home):
    uri = _scoring_run(registry, open_store(str(mlops_home)), "scheduled__1", 10)
    for path, params in ((f"/models/{MODEL}/monitoring", {}), (f"/api/models/{MODEL}/monitoring", {}),
                         ("/manifests", {"uri": uri})):
        response = client.get(path, params=params)
        assert response.status_code == 401, path
        assert "rows" not in response.text


def test_page_renders_the_charts_tables_and_runs(client, registry, mlops_home):
    manifest = _scoring_run(registry, open_store(str(mlops_home)), "scheduled__1", 500)
    client.authenticate()
    page = client.get(f"/models/{MODEL}/monitoring")
    assert page.status_code == 200, page.text[:500]
    html = page.text
    assert 'id="performance-roc_auc"' in html and 'id="performance-accuracy"' in html
    assert '<polygon class="band"' in html and "threshold min: 0.8" in html
    assert 'data-slice="plan=basic"' in html and "roc_auc 0.78 below the threshold min 0.8" in html
    assert html.count('<tr data-kind="prediction">') == 1 and html.count('<tr data-kind="data">') == 1
    assert "12.5 s" in html and "/manifests?uri=" in html and "not configured" not in html
    served = client.get("/manifests", params={"uri": manifest})
    assert served.status_code == 200 and served.json()["rows"] == 500
    assert served.headers["content-type"] == "application/json" and "sandbox" in served.headers["content-security-policy"]
    assert client.get("/manifests", params={"uri": "/etc/passwd"}).status_code == 404


def test_api_answers_the_same_data_without_the_charts(client, registry, mlops_home):
    _scoring_run(registry, open_store(str(mlops_home)), "scheduled__1", 500)
    client.authenticate()
    answer = client.get(f"/api/models/{MODEL}/monitoring")
    assert answer.status_code == 200
    data = answer.json()
    assert "charts" not in data
    assert [r["passed"] for r in data["realized"]] == [True, True, False]
    assert data["scoring_runs"][0]["rows"] == 500 and data["scoring_runs"][0]["seconds"] == 12.5
    assert data["reference_lines"]["roc_auc"][-1] == {"name": "threshold min", "value": 0.8, "style": "threshold"}
    assert client.get("/api/models/nope/monitoring").status_code == 404


def test_a_model_without_monitoring_says_what_to_configure(client, registry, monkeypatch, tmp_path):
    unmonitored = tmp_path / "unmonitored"
    unmonitored.mkdir()
    (unmonitored / "churn.yaml").write_text(yaml.safe_dump({**PIPELINE, "monitoring": None}))
    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIGS", str(unmonitored))
    client.authenticate()
    html = client.get(f"/models/{MODEL}/monitoring").text
    assert 'id="monitoring-not-configured"' in html
    assert "<code>monitoring:</code>" in html and "docs/monitoring.md" in html
