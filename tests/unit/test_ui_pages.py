"""The models and model pages at scale, the promote default, compare by fingerprint and the chart axes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event

from airflow_mlops.config import parse_pipeline_config
from airflow_mlops.evaluation.gate import _slice_table
from airflow_mlops.registry import ModelRegistry
from airflow_mlops.storage import open_store
from airflow_mlops.ui.charts import (
    ReferenceLine,
    TimePoint,
    TimeSeries,
    axis_range,
    line_chart_svg,
    time_chart_svg,
)
from airflow_mlops.ui.views import RegistryViews

PIPELINE = {
    "pipeline": "churn",
    "data": {"train": "data/churn/train.parquet", "target": "churned"},
    "model": {"flavor": "xgboost", "task": "binary_classification"},
    "evaluation": {"primary_metric": "roc_auc", "thresholds": {"roc_auc": {"min": 0.85}}},
    "drift": {"drift_share": 0.3},
}

# ---------------------------------------------------------------------- axes


def test_a_flat_series_gets_a_small_round_range_around_its_value():
    low, high, ticks = axis_range([0.9, 0.9, 0.9])
    assert (low, high) == pytest.approx((0.88, 0.92))
    assert ticks == pytest.approx([0.88, 0.89, 0.9, 0.91, 0.92])


def test_a_clamped_axis_never_leaves_the_unit_interval():
    assert axis_range([1.0], clamp=(0.0, 1.0))[:2] == pytest.approx((0.98, 1.0))
    low, high, ticks = axis_range([0.0, 0.02, 0.05], clamp=(0.0, 1.0))
    assert low == 0.0 and high <= 1.0 and min(ticks) >= 0.0
    assert axis_range([0.0, 0.02], clamp=None)[0] < 0  # unclamped quantities may go below zero


def test_ticks_are_round_and_cover_the_values():
    low, high, ticks = axis_range([0.873, 0.912, 0.951])
    assert low <= 0.873 and high >= 0.951 and len(ticks) >= 3
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1 and steps.pop() in (0.01, 0.02, 0.025, 0.05)


def test_line_chart_draws_threshold_lines_and_keeps_labels_inside():
    points = [(f"v{i}", 0.9) for i in range(1, 101)]
    svg = line_chart_svg(points, "roc_auc", [ReferenceLine("gate min", 0.85, "threshold")], clamp=(0.0, 1.0))
    assert '<g class="reference threshold">' in svg and "<title>gate min: 0.85</title>" in svg
    labels = re.findall(r'text-anchor="(start|middle|end)">(v\d+)<', svg)
    assert labels[0] == ("start", "v1") and labels[-1] == ("end", "v100")
    assert len(labels) < 20  # thinned so that neighbours do not overlap
    ticks = [float(t) for t in re.findall(r'text-anchor="end">([0-9.]+)</text>', svg)]
    assert min(ticks) <= 0.85 and max(ticks) <= 1.0  # the threshold is in range; roc_auc never above 1


def test_time_chart_date_labels_hang_inwards_and_shares_stay_in_0_1():
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    series = TimeSeries("data drift", "data-drift", [TimePoint(start, 0.4), TimePoint(start + timedelta(days=3), 0.6)])
    svg = time_chart_svg("drift share", [series], [ReferenceLine("drift threshold", 0.5, "threshold")],
                         value_range=(0.0, 1.0))
    assert 'text-anchor="start">2025-03-01 00:00<' in svg and 'text-anchor="end">2025-03-04 00:00<' in svg
    assert "-0." not in svg.split("</text>", 1)[1].split("<g class")[0]  # no negative tick


def test_the_gate_report_renders_slices_as_a_table():
    html = _slice_table({"plan=basic": {"rows": 300, "roc_auc": 0.7}, "plan=trial": {"rows": 3, "note": "too few"},
                         "region": {"error": "column 'region' is not in the test set"}})
    assert "{" not in html and "<th>roc_auc</th>" in html and "<td class=num>0.7</td>" in html
    assert "too few" in html and "not in the test set" in html


# ---------------------------------------------------------------------- pages


def _register(registry: ModelRegistry, name: str, versions: int, *, failed: set[int] = frozenset()) -> None:
    for version in range(1, versions + 1):
        registry.register_version(
            name, artifact_uri=f"/m/{name}/{version}", artifact_sha256="0" * 64, flavor="xgboost",
            task="binary_classification", params={"depth": version}, metrics={"validation_roc_auc": 0.9},
            datasets={"test": {"uri": f"data/{name}/v{version}/test.parquet", "fingerprint": "e" * 64}},
            dag_id=f"{name}__retrain", run_id=f"manual__{version}", task_id="train",
        )
        registry.record_evaluation(name, version, metrics={"roc_auc": 0.9}, passed=version not in failed,
                                   slice_metrics={"plan=basic": {"rows": 30, "roc_auc": 0.8}})


@contextmanager
def counted(registry: ModelRegistry) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        if not statement.lstrip().upper().startswith(("PRAGMA", "BEGIN", "COMMIT", "ROLLBACK")):
            statements.append(statement)

    engines = (registry.engine, registry._reader)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def registry(mlops_home: Path) -> ModelRegistry:
    return ModelRegistry(f"sqlite:///{mlops_home}/registry.db", upgrade=True)


def _views(registry: ModelRegistry, mlops_home: Path) -> RegistryViews:
    return RegistryViews(registry, open_store(str(mlops_home)), {"churn": parse_pipeline_config(PIPELINE)})


def test_the_models_page_runs_the_same_queries_for_3_models_as_for_12(registry, mlops_home):
    views = _views(registry, mlops_home)
    for i in range(3):
        _register(registry, f"m{i:02d}", 2)
        registry.set_alias(f"m{i:02d}", "champion", 1, reason="first")
        registry.record_drift(f"m{i:02d}", drift_share=0.1, drifted_columns=[], passed=True)
    with counted(registry) as few:
        rows = views.models()
    for i in range(3, 12):
        _register(registry, f"m{i:02d}", 4)
        registry.set_alias(f"m{i:02d}", "champion", 2, reason="first")
        registry.record_drift(f"m{i:02d}", drift_share=0.1, drifted_columns=[], passed=True)
    with counted(registry) as many:
        more = views.models()
    assert len(rows) == 3 and len(more) == 12
    assert len(many) == len(few) <= 8, many
    assert more[5] | {"last_training": None, "last_drift": None} == {
        "name": "m05", "alias": "champion", "champion_version": 2, "primary_metric": "roc_auc", "primary_value": 0.9,
        "versions": 4, "last_training": None, "last_drift": None}
    assert more[5]["last_training"]["version"] == 4 and more[5]["last_drift"]["drift_share"] == 0.1
    page = views.models_page()
    assert page["next_after"] is None and len(page["models"]) == 12
    assert [m["name"] for m in views.models(after="m09")] == ["m10", "m11"]


def test_the_model_page_pages_versions_by_number_with_a_bounded_number_of_queries(registry, mlops_home):
    views = _views(registry, mlops_home)
    _register(registry, "churn", 5)
    with counted(registry) as few:
        views.model("churn", limit=2)
    _register(registry, "churn_big", 60)
    with counted(registry) as many:
        first = views.model("churn_big", limit=20)
    assert len(many) == len(few)
    assert [v["version"] for v in first["versions"]] == list(range(60, 40, -1))
    assert first["paging"] == {"limit": 20, "total": 60, "newer": None, "older": 41}
    middle = views.model("churn_big", older_than=41, limit=20)
    assert [v["version"] for v in middle["versions"]] == list(range(40, 20, -1))
    assert middle["paging"] == {"limit": 20, "total": 60, "newer": 40, "older": 21}
    last = views.model("churn_big", older_than=21, limit=20)
    assert last["versions"][-1]["version"] == 1 and last["paging"]["older"] is None
    back = views.model("churn_big", newer_than=20, limit=20)
    assert [v["version"] for v in back["versions"]] == list(range(40, 20, -1)) and back["paging"]["newer"] == 40
    assert views.model("churn_big", newer_than=40, limit=20)["paging"]["newer"] is None


def test_promote_defaults_to_the_newest_version_that_passed_and_marks_failed_ones(registry, mlops_home):
    views = _views(registry, mlops_home)
    _register(registry, "churn", 4, failed={3, 4})
    registry.set_alias("churn", "champion", 1, reason="first")
    promote = views.model("churn")["promote"]
    assert promote["selected"] == 2 and "passed" in promote["why"]
    assert [(o["version"], o["failed"]) for o in promote["options"]] == [(4, True), (3, True), (2, False), (1, False)]
    # v2 fails a re-evaluation: no version passed, so the champion is preselected.
    registry.record_evaluation("churn", 2, metrics={"roc_auc": 0.5}, passed=False)
    registry.record_evaluation("churn", 1, metrics={"roc_auc": 0.5}, passed=False)
    promote = views.model("churn")["promote"]
    assert promote["selected"] == 1 and "current champion" in promote["why"]
    # The default is offered even when it is not on the page shown.
    assert 1 in [o["version"] for o in views.model("churn", limit=1)["promote"]["options"]]


def test_model_page_lists_scoring_runs_and_draws_the_gate_and_drift_thresholds(registry, mlops_home):
    views = _views(registry, mlops_home)
    _register(registry, "churn", 3)
    registry.record_scoring_run("churn", 2, dag_id="churn__batch_inference", run_id="scheduled__1",
                                manifest_uri=f"{mlops_home}/p/_manifest.json", output_prefix=f"{mlops_home}/p",
                                rows=1234, seconds=3.5)
    registry.record_drift("churn", drift_share=0.4, drifted_columns=["a"], passed=False)
    model = views.model("churn")
    assert [(r["version"], r["rows"], r["run_id"]) for r in model["scoring_runs"]] == [(2, 1234, "scheduled__1")]
    assert "<title>gate min: 0.85</title>" in model["metric_chart"]
    assert "<title>drift threshold: 0.3</title>" in model["drift_chart"]


def test_compare_calls_data_with_equal_fingerprints_the_same_whatever_the_path(registry, mlops_home):
    _register(registry, "churn", 2)
    lineage = {row["key"]: row for row in _views(registry, mlops_home).compare("churn", 1, 2)["lineage"]}
    test = lineage["test data"]
    assert test["differs"] is False and test["same_data"] == f"same data (fingerprint {'e' * 12})"
    assert "v1/test.parquet" in test["a"] and "v2/test.parquet" in test["b"]
    assert lineage["dag run"]["differs"] is True


def test_version_page_has_slice_tables(registry, mlops_home):
    _register(registry, "churn", 1)
    version = _views(registry, mlops_home).version("churn", 1)
    assert version["gate"] == "passed"
    assert version["evaluations"][0]["slices"] == {
        "columns": ["roc_auc"],
        "rows": [{"slice": "plan=basic", "rows": 30, "metrics": {"roc_auc": 0.8}, "note": None, "failed": False}]}


def test_the_model_page_shows_training_cost_per_version_and_scoring_cost_over_time(registry, mlops_home):
    views = _views(registry, mlops_home)
    for version, cpu in ((1, 2.0), (2, 3.0), (3, 40.0)):
        registry.register_version("churn", artifact_uri=f"/m/{version}", artifact_sha256="0" * 64, flavor="xgboost",
                                  task="binary_classification", dag_id="churn__retrain", run_id=f"r{version}",
                                  task_id="train", cost={"wall_seconds": cpu / 2, "cpu_seconds": cpu,
                                                         "peak_memory_bytes": 300 * 2**20, "peak_memory_scope": "task"})
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    for day, cpu in enumerate((1.5, 2.0, 2.5)):
        registry.record_scoring_run("churn", 3, dag_id="churn__batch_inference", run_id=f"scheduled__{day}",
                                    manifest_uri=f"{mlops_home}/p{day}/_manifest.json",
                                    output_prefix=f"{mlops_home}/p{day}", rows=500_000, seconds=cpu,
                                    cpu_seconds=cpu, peak_memory_bytes=2**30, committed_at=start + timedelta(days=day))
    model = views.model("churn")
    assert [v["cost_text"] for v in model["versions"]] == [
        "40 CPU-s · 20 s wall · 300 MiB peak", "3 CPU-s · 1.5 s wall · 300 MiB peak", "2 CPU-s · 1 s wall · 300 MiB peak"]
    assert [v["cost"]["cpu_seconds"] for v in model["versions"]] == [40.0, 3.0, 2.0]
    training = model["training_cost_chart"]
    assert "training CPU-seconds" in training and "<title>v3: 40</title>" in training
    assert "<title>median: 3</title>" in training
    scoring = model["scoring_cost_chart"]
    assert "CPU-seconds per million rows" in scoring and "2026-03-01" in scoring and ": 5</title>" in scoring
    assert "<title>median: 4</title>" in scoring
    assert [(r["cpu_seconds_per_million_rows"], r["peak_memory"]) for r in model["scoring_runs"]] == [
        (5.0, "1.00 GiB"), (4.0, "1.00 GiB"), (3.0, "1.00 GiB")]


# ------------------------------------------------------------- the reviewed evaluation


def _reviewed(registry: ModelRegistry, mlops_home: Path) -> None:
    """`churn` v1 and v2, each with an evaluation made by `evaluate_candidate` on a planted table: `signal`
    decides the label (v2 also leans on `noise_0`), and `sex` (not a feature) marks a group with noisier labels."""
    import numpy as np
    import pandas as pd

    from airflow_mlops.evaluation import evaluate_candidate
    from airflow_mlops.training import load_model, train_model

    rng = np.random.default_rng(0)
    rows = 1200
    female = rng.random(rows) < 0.4
    signal = rng.normal(size=rows) - 0.8 * female
    noise = rng.normal(size=rows)
    label = (signal + 0.3 * rng.normal(size=rows)) > 0
    frame = pd.DataFrame({"signal": signal, "noise_0": noise, "sex": np.where(female, "female", "male"),
                          "churned": np.where(label ^ (female & (rng.random(rows) < 0.25)), "yes", "no")})
    store = open_store(str(mlops_home))
    config = parse_pipeline_config({**PIPELINE, "model": {**PIPELINE["model"], "params": {"n_estimators": 30}},
                                    "evaluation": {**PIPELINE["evaluation"], "slices": [
                                        {"column": "sex", "thresholds": {"roc_auc": {"min": 0.85}}}],
                                        "fairness": {"sensitive": ["sex"], "max": {"demographic_parity_difference": 0.1}},
                                        "explanations": {"n_repeats": 2}}})
    for version, train in ((1, frame.iloc[:700]), (2, frame.iloc[:700].assign(signal=lambda f: f.signal + f.noise_0))):
        trained = train_model(config, train, None, store, output_prefix=f"m{version}")
        registry.register_version("churn", artifact_uri=trained.model_uri, artifact_sha256=trained.artifact.sha256,
                                  flavor="xgboost", task="binary_classification", params={}, metrics={})
        model = load_model(trained.model_uri, store, expected_sha256=trained.artifact.sha256)
        evaluation = evaluate_candidate(config, model, frame.iloc[700:].reset_index(drop=True), store,
                                        report_path=f"r{version}/evaluation.html")
        registry.record_evaluation("churn", version, **evaluation.record)


def _page_client(mlops_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import json

    import yaml
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
    app.dependency_overrides[get_user] = lambda: type("Viewer", (), {"get_name": lambda self: "viewer"})()
    return TestClient(app)


def test_the_version_page_shows_fairness_per_class_confusion_calibration_and_importance(
        registry, mlops_home, tmp_path, monkeypatch):
    _reviewed(registry, mlops_home)
    review = _views(registry, mlops_home).version("churn", 1)["review"]
    assert [row["class"] for row in review["per_class"]] == ["no", "yes"]
    assert set(review) == {"fairness", "per_class", "confusion", "calibration", "permutation", "contributions"}
    page = _page_client(mlops_home, tmp_path, monkeypatch).get("/models/churn/versions/1")
    assert page.status_code == 200, page.text[:500]
    html = page.text
    assert '<tr data-slice="sex=female" class="failed">' in html and "roc_auc on sex=female is " in html
    assert "demographic_parity_difference on sex is " in html and "(selection rate female " in html
    assert '<tr data-class="yes"><td>yes</td>' in html  # the per-class table
    confusion = html.split('id="confusion"', 1)[1].split("</table>", 1)[0]
    assert confusion.count('class="num diagonal"') == 2 and '<tr data-class="no"><th>no</th>' in confusion
    assert 'class="chart calibration"' in html and "perfectly calibrated" in html and "Brier score" in html
    importance = html.split('id="importance"', 1)[1]
    labels = re.findall(r'<g class="bar-row" data-label="([^"]+)"', importance)
    assert labels[:2] == ["signal", "noise_0"] and labels[2:] == ["signal", "noise_0"]  # permutation, then SHAP
    assert "permutation importance: drop in roc_auc" in importance and "TreeSHAP" in importance


def test_the_compare_page_shows_how_importance_moved(registry, mlops_home, tmp_path, monkeypatch):
    _reviewed(registry, mlops_home)
    moves = {row["feature"]: row for row in _views(registry, mlops_home).compare("churn", 1, 2)["importance"]["permutation"]}
    assert set(moves) == {"signal", "noise_0"}
    noise = moves["noise_0"]
    assert noise["value_b"] > noise["value_a"] and noise["value_change"] == pytest.approx(noise["value_b"] - noise["value_a"])
    assert noise["rank_change"] == noise["rank_a"] - noise["rank_b"]
    page = _page_client(mlops_home, tmp_path, monkeypatch).get("/models/churn/compare", params={"a": 1, "b": 2})
    assert page.status_code == 200, page.text[:500]
    assert 'id="compare-permutation"' in page.text and 'id="compare-contributions"' in page.text
    table = page.text.split('id="compare-permutation"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'data-feature="([^"]+)"', table) == [row["feature"] for row in moves.values()]
    assert f'{noise["value_change"]:+.3g}' in table
