"""The registry plugin in a real Airflow api-server: its API, its security and its pages in Chromium.

A PostgreSQL registry is seeded with three versions of `churn` (champion moved
v1 -> v2, v3 failed its gate, evaluations with slices and a drift check with HTML
reports in the artifact root, batch-inference runs); the api-server loads the plugin through the package's entry point (once: no
"already registered" warning) and reaches the registry
through the `mlops_registry` connection like in production.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
import pytest

from airflow_mlops.registry import Approval, ModelRegistry
from airflow_mlops.storage import open_store
from airflow_mlops.testing.airflow import running_airflow
from airflow_mlops.testing.postgres import create_database

REPO = Path(__file__).resolve().parents[2]
MODEL = "churn"
CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.slow

PIPELINE_FILE = """\
pipeline: churn
data: {train: data/churn/train.parquet, target: churned, ids: [customer_id]}
model: {flavor: xgboost, task: binary_classification}
evaluation: {primary_metric: roc_auc, thresholds: {roc_auc: {min: 0.85}}}
monitoring: {labels: labels/churn/, thresholds: {roc_auc: {min: 0.85}}}
promotion: {protected: [champion], alias_admins: {roles: [admin]}}
"""


def _seed(registry: ModelRegistry, store: Any) -> dict[str, str]:
    reports = {}
    for version, auc in ((1, 0.91), (2, 0.93), (3, 0.89)):
        registry.register_version(
            MODEL, artifact_uri=f"{store.root}/models/churn/{version}/model.ubj", artifact_sha256="0" * 64,
            flavor="xgboost", task="binary_classification", params={"max_depth": 3 + version, "eta": 0.1},
            metrics={"validation_roc_auc": auc}, code_version=f"abc{version}",
            datasets={"train": {"uri": "data/churn/train.parquet", "fingerprint": f"{version}" * 64, "rows": 10, "columns": []},
                      # The same test rows copied to a new path for each run: the same data.
                      "test": {"uri": f"data/churn/v{version}/test.parquet", "fingerprint": "e" * 64, "rows": 5,
                               "columns": []}},
            dag_id="churn__retrain", run_id=f"manual__v{version}", task_id="train", created_by="airflow",
            cost={"wall_seconds": 10.0 * version, "cpu_seconds": 20.0 * version, "peak_memory_bytes": 512 * 2**20,
                  "peak_memory_scope": "task"},
        )
        report = store.write_bytes(f"reports/churn/evaluation-v{version}.html",
                                   f"<html><body><h1>Evaluation report v{version}</h1></body></html>".encode())
        reports[f"v{version}"] = report.uri
        registry.record_evaluation(MODEL, version, metrics={"roc_auc": auc - 0.01, "accuracy": 0.8},
                                   passed=version != 3, report_uri=report.uri, run_id=f"manual__v{version}",
                                   compared_to_version=version - 1 or None, dataset_fingerprint="f" * 64,
                                   slice_metrics={"plan=basic": {"rows": 40, "roc_auc": auc - 0.05},
                                                  "plan=trial": {"rows": 3, "note": "fewer than 30 rows: not scored"}})
    registry.set_alias(MODEL, "champion", 1, actor="airflow", reason="first model", dag_id="churn__retrain",
                       run_id="manual__v1")
    registry.set_alias(MODEL, "champion", 2, actor="airflow", reason="beats v1 on roc_auc", dag_id="churn__retrain",
                       run_id="manual__v2",
                       approval=Approval(approver="bob", comment="checked the slices", at=datetime.now(timezone.utc)))
    registry.record_alias_decision(MODEL, "champion", 3, kind="rejected", actor="airflow", reason="bob rejected",
                                   approval=Approval(approver="bob", comment="worse on new customers",
                                                     at=datetime.now(timezone.utc)))
    _seed_monitoring(registry, store)
    drift = store.write_bytes("reports/churn/drift-1.html", b"<html><body>Drift report</body></html>")
    reports["drift"] = drift.uri
    registry.record_drift(MODEL, version=2, drift_share=0.4, drifted_columns=["tenure", "charges"], passed=False,
                          report_uri=drift.uri, run_id="scheduled__1")
    return reports


def _seed_monitoring(registry: ModelRegistry, store: Any) -> None:
    """Two weeks of v2 in service: a batch, estimated and realized roc_auc, a prediction drift check."""
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    for week, auc in enumerate((0.9, 0.84)):
        end = start + timedelta(days=7 * (week + 1))
        manifest = store.write_json(f"predictions/churn/week{week}/_manifest.json", {"rows": 1000})
        registry.record_scoring_run(MODEL, 2, dag_id="churn__batch_inference", run_id=f"scheduled__w{week}",
                                    manifest_uri=manifest.uri, output_prefix=f"{store.root}/predictions/churn/week{week}",
                                    rows=1000, seconds=4.2, committed_at=end - timedelta(days=6),
                                    cpu_seconds=3.0 + week, peak_memory_bytes=2**30)
        registry.record_performance(MODEL, 2, kind="estimated", rows=1000, metrics={"roc_auc": auc + 0.01},
                                    bands={"roc_auc": [auc - 0.02, auc + 0.04]}, period_end=end - timedelta(days=6))
        registry.record_performance(MODEL, 2, kind="realized", rows=1000, labelled_rows=700, coverage=0.7,
                                    metrics={"roc_auc": auc}, period_start=end - timedelta(days=7), period_end=end,
                                    passed=auc >= 0.85, slice_metrics={"plan=basic": {"rows": 400, "roc_auc": auc - 0.05}})
    registry.record_drift(MODEL, version=2, drift_share=0.6, drifted_columns=["prediction"], passed=False,
                          kind="prediction")


@pytest.fixture(scope="module")
def ui(postgres_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("registry-ui")
    configs = root / "configs"
    configs.mkdir()
    (configs / "churn.yaml").write_text(PIPELINE_FILE)
    dags = root / "dags"
    dags.mkdir()
    store = open_store(str(root / "mlops"))
    (root / "secret.html").write_text("<html>outside the artifact root</html>")
    registry_url = create_database(postgres_server)
    registry = ModelRegistry(registry_url, upgrade=True)
    reports = _seed(registry, store)
    env = {
        "AIRFLOW_MLOPS_HOME": str(root / "mlops"),
        "AIRFLOW_MLOPS_CONFIGS": str(configs),
        "AIRFLOW_CONN_MLOPS_REGISTRY": json.dumps({"conn_type": "mlops_registry", "extra": {"url": registry_url}}),
    }
    with running_airflow(dags, home=root / "airflow", plugins_folder=REPO / "plugins", env=env,
                         components=("api-server",)) as instance:
        instance.registry = registry
        instance.reports = reports
        instance.root = root
        yield instance


def call(ui, method: str, path: str, *, token: str | None = None, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(ui.base_url + path, method=method, headers=dict(headers or {}))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.data = json.dumps(body).encode()
        if "Content-Type" not in request.headers:
            request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def get_json(ui, path: str, user: str = "admin") -> Any:
    status, _, body = call(ui, "GET", path, token=ui.token(user))
    assert status == 200, (path, status, body[:500])
    return json.loads(body)


READ_ENDPOINTS = [
    "/mlops/models", f"/mlops/models/{MODEL}", f"/mlops/models/{MODEL}/versions/1",
    f"/mlops/models/{MODEL}/compare?a=1&b=2", "/mlops/runs/churn__retrain/manual__v2",
    f"/mlops/models/{MODEL}/monitoring", f"/mlops/api/models/{MODEL}/monitoring",
    "/mlops/api/models", f"/mlops/api/models/{MODEL}", f"/mlops/api/models/{MODEL}/versions/2",
    f"/mlops/api/models/{MODEL}/compare?a=1&b=2", "/mlops/api/runs/churn__retrain/manual__v2",
    f"/mlops/models/{MODEL}/versions/1/card", f"/mlops/api/models/{MODEL}/versions/1/card",
]
WRITE_ENDPOINTS = [
    (f"/mlops/api/models/{MODEL}/aliases/champion", {"version": 3, "reason": "try v3", "expected_version": 2}),
    (f"/mlops/api/models/{MODEL}/aliases/champion/rollback", {"reason": "undo", "expected_version": 2}),
]


def test_the_plugin_is_registered_once(ui):
    # The package's entry point is its only registration: a second one is logged and listed as an import error.
    assert any(p["name"] == "airflow_mlops_registry" for p in get_json(ui, "/api/v2/plugins")["plugins"])
    assert "already registered" not in ui.log_tail("api-server", 100_000)


def test_every_endpoint_refuses_a_caller_without_a_token(ui):
    for path in READ_ENDPOINTS:
        assert call(ui, "GET", path)[0] == 401, path
    status, _, _ = call(ui, "GET", f"/mlops/reports?uri={ui.reports['v1']}")
    assert status == 401
    for path, body in WRITE_ENDPOINTS:
        assert call(ui, "POST", path, body=body)[0] == 401, path
    assert ui.registry.aliases(MODEL) == {"champion": 2}


def test_a_forged_token_is_refused(ui):
    genuine = jwt.decode(ui.token("admin"), options={"verify_signature": False})
    forged = {
        "signed with another key": jwt.encode(genuine, "x" * 64, algorithm="HS512"),
        "unsigned": jwt.encode(genuine, None, algorithm="none"),
        "garbage": "not.a.token",
    }
    for kind, token in forged.items():
        assert call(ui, "GET", "/mlops/api/models", token=token)[0] in (401, 403), kind
        path, body = WRITE_ENDPOINTS[0]
        assert call(ui, "POST", path, token=token, body=body)[0] in (401, 403), kind
    # The same token as a cookie, the way a browser would send it.
    status, _, _ = call(ui, "GET", "/mlops/api/models", headers={"Cookie": f"_token={forged['signed with another key']}"})
    assert status in (401, 403)
    assert ui.registry.aliases(MODEL) == {"champion": 2}


def test_a_read_only_user_reads_everything_and_changes_nothing(ui):
    for path in READ_ENDPOINTS:
        status, _, body = call(ui, "GET", path, token=ui.token("viewer"))
        assert status == 200, (path, body[:300])
    for path, body in WRITE_ENDPOINTS:
        status, _, answer = call(ui, "POST", path, token=ui.token("viewer"), body=body)
        assert status == 403, (path, answer)
        assert b"viewer may not change the aliases" in answer
    assert ui.registry.aliases(MODEL) == {"champion": 2}
    # The page hides the actions it would refuse.
    _, _, page = call(ui, "GET", f"/mlops/models/{MODEL}", token=ui.token("viewer"))
    assert b'id="promote-form"' not in page and b"Roll back champion" not in page


def test_read_api_answers_with_the_registry_contents(ui):
    models = get_json(ui, "/mlops/api/models")
    assert [m["name"] for m in models] == [MODEL]
    churn = models[0]
    assert churn["champion_version"] == 2 and churn["primary_metric"] == "roc_auc"
    assert churn["primary_value"] == pytest.approx(0.92)  # v2's latest test evaluation
    assert churn["last_training"]["run_id"] == "manual__v3"
    assert churn["last_drift"]["passed"] is False and churn["last_drift"]["drift_share"] == 0.4

    model = get_json(ui, f"/mlops/api/models/{MODEL}")
    assert [v["version"] for v in model["versions"]] == [3, 2, 1]
    assert model["aliases"] == {"champion": 2}
    assert model["rollback_targets"] == {"champion": 1}
    assert [(e["kind"], e["from_version"], e["to_version"], e["reason"]) for e in model["history"]] == [
        ("rejected", 2, 3, "bob rejected"), ("set", 1, 2, "beats v1 on roc_auc"), ("set", None, 1, "first model")]
    assert model["versions"][1]["lineage"]["dag run"] == "churn__retrain / manual__v2"
    assert model["drift"][0]["drifted_columns"] == ["tenure", "charges"]

    version = get_json(ui, f"/mlops/api/models/{MODEL}/versions/1")
    assert version["code_version"] == "abc1" and version["evaluations"][0]["passed"] is True

    comparison = get_json(ui, f"/mlops/api/models/{MODEL}/compare?a=1&b=3")
    params = {row["key"]: row for row in comparison["params"]}
    assert params["max_depth"]["a"] == 4 and params["max_depth"]["b"] == 6 and params["max_depth"]["differs"]
    assert params["eta"]["differs"] is False

    run = get_json(ui, "/mlops/api/runs/churn__retrain/manual__v2")
    assert [(v["name"], v["version"]) for v in run["versions"]] == [(MODEL, 2)]
    assert [e["version"] for e in run["evaluations"]] == [2]
    assert get_json(ui, "/mlops/api/runs/other_dag/manual__v2")["versions"] == []


def test_unknown_models_and_versions_are_404_and_bad_input_422(ui):
    admin = ui.token("admin")
    assert call(ui, "GET", "/mlops/api/models/nope", token=admin)[0] == 404
    assert call(ui, "GET", f"/mlops/api/models/{MODEL}/versions/99", token=admin)[0] == 404
    assert call(ui, "GET", f"/mlops/api/models/{MODEL}/versions/0", token=admin)[0] == 422
    assert call(ui, "GET", f"/mlops/api/models/{MODEL}/compare?a=1", token=admin)[0] == 422
    status, _, page = call(ui, "GET", "/mlops/models/nope", token=admin)
    assert status == 404 and b"no registered model named" in page


def test_reports_are_served_only_from_inside_the_artifact_root(ui):
    admin = ui.token("admin")
    status, headers, body = call(ui, "GET", f"/mlops/reports?uri={urllib.request.quote(ui.reports['v2'])}", token=admin)
    assert status == 200 and b"Evaluation report v2" in body
    assert headers["content-type"].startswith("text/html")
    assert "sandbox" in headers["content-security-policy"]
    outside = [
        str(ui.root / "secret.html"),
        str(ui.root / "mlops" / ".." / "secret.html"),
        f"file://{ui.root / 'secret.html'}",
        str(ui.root / "mlops" / "registry.db"),
        "s3://bucket/reports/x.html",
        "/etc/passwd",
    ]
    for uri in outside:
        status, _, body = call(ui, "GET", f"/mlops/reports?uri={urllib.request.quote(uri)}", token=admin)
        assert status == 404, (uri, status)
        assert b"<html>outside the artifact root</html>" not in body


def test_promotion_needs_json_from_the_same_origin_a_reason_and_a_current_view(ui):
    admin = ui.token("admin")
    path = f"/mlops/api/models/{MODEL}/aliases/champion"
    form = urllib.request.Request(ui.base_url + path, method="POST", data=b"version=3&reason=x",
                                  headers={"Authorization": f"Bearer {admin}",
                                           "Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(form, timeout=30)
    assert refused.value.code == 415
    status, _, _ = call(ui, "POST", path, token=admin, body={"version": 3, "reason": "x", "expected_version": 2},
                        headers={"Origin": "http://evil.example"})
    assert status == 403
    assert call(ui, "POST", path, token=admin, body={"version": 3, "reason": "", "expected_version": 2})[0] == 422
    assert call(ui, "POST", path, token=admin, body={"version": 3, "reason": "x", "stray": 1})[0] == 422
    status, _, body = call(ui, "POST", path, token=admin, body={"version": 3, "reason": "x", "expected_version": 1})
    assert status == 409 and b"moved since" in body
    assert call(ui, "POST", path, token=admin, body={"version": 99, "reason": "x", "expected_version": 2})[0] == 404
    assert ui.registry.aliases(MODEL) == {"champion": 2}


def test_promote_then_roll_back_through_the_api_records_who_and_why(ui):
    admin = ui.token("admin")
    status, _, body = call(ui, "POST", f"/mlops/api/models/{MODEL}/aliases/challenger", token=admin,
                           body={"version": 3, "reason": "shadow v3", "expected_version": None})
    assert status == 200, body
    assert ui.registry.aliases(MODEL) == {"challenger": 3, "champion": 2}
    status, _, body = call(ui, "POST", f"/mlops/api/models/{MODEL}/aliases/challenger/rollback", token=admin,
                           body={"reason": "v3 failed its gate", "expected_version": 3})
    assert status == 400 and b"no earlier version" in body  # a first assignment has nothing to return to
    latest = ui.registry.history(MODEL, "challenger")[-1]
    assert (latest.actor, latest.reason, latest.to_version) == ("admin", "shadow v3", 3)
    # The page offers no button that would be refused, and names the version each rollback restores.
    assert get_json(ui, f"/mlops/api/models/{MODEL}")["rollback_targets"] == {"challenger": None, "champion": 1}
    _, _, page = call(ui, "GET", f"/mlops/models/{MODEL}", token=admin)
    assert b'data-alias="challenger" data-version' not in page and b"no earlier version to roll back to" in page
    assert b"Roll back champion to v1" in page


def test_a_protected_alias_refuses_a_direct_move_by_a_user_outside_its_admins(ui):
    alice = ui.token("alice")  # role "user": may edit the DAGs, is not an alias admin
    for path, body in ((f"/mlops/api/models/{MODEL}/aliases/champion", {"version": 3, "reason": "try v3", "expected_version": 2}),
                       (f"/mlops/api/models/{MODEL}/aliases/champion/rollback", {"reason": "undo", "expected_version": 2})):
        status, _, answer = call(ui, "POST", path, token=alice, body=body)
        assert status == 403, answer
        assert json.loads(answer)["detail"] == (
            "churn 'champion' is protected (promotion.protected): it moves only through an approved promotion in "
            "churn__retrain, or directly by role admin (promotion.alias_admins); alice has roles user")
    assert ui.registry.aliases(MODEL)["champion"] == 2
    # An alias that is not protected still moves for her.
    status, _, answer = call(ui, "POST", f"/mlops/api/models/{MODEL}/aliases/staging", token=alice,
                             body={"version": 3, "reason": "try v3", "expected_version": None})
    assert status == 200, answer


def test_the_version_page_shows_who_approved_and_who_rejected(ui):
    status, _, page = call(ui, "GET", f"/mlops/models/{MODEL}/versions/2", token=ui.token("admin"))
    assert status == 200
    assert b'approved by <strong class="approver">bob</strong>' in page and b"checked the slices" in page
    status, _, page = call(ui, "GET", f"/mlops/models/{MODEL}/versions/3", token=ui.token("admin"))
    assert b"rejected: v3 (the alias stays at v2)" in page and b"worse on new customers" in page
    history = get_json(ui, f"/mlops/api/models/{MODEL}/versions/2")["alias_history"]
    assert {(e["kind"], e["approver"], e["approval_comment"]) for e in history} >= {("set", "bob", "checked the slices")}


def _chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    )


def _logged_in_page(ui, browser: Any, color_scheme: str = "light") -> Any:
    """A page logged in to Airflow as admin; `color_scheme` is what prefers-color-scheme answers."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, color_scheme=color_scheme)
    page.goto(f"{ui.base_url}/auth/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
    return page


@pytest.mark.browser
def test_browser_rollback_of_the_champion(ui, screenshots):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = _chromium(playwright)
        try:
            page = _logged_in_page(ui, browser)

            # The nav entry opens the models page inside Airflow.
            page.goto(f"{ui.base_url}/plugin/mlops-models")
            frame = page.frame_locator("iframe")
            expect(frame.locator(f"tr[data-model={MODEL}] td.champion")).to_contain_text("v2", timeout=30_000)
            page.screenshot(path=str(screenshots / "1-airflow-nav-models.png"))

            page.goto(f"{ui.base_url}/mlops/models")
            expect(page.locator("#user")).to_have_text("admin")
            page.click(f"text={MODEL}")
            expect(page.locator("h1")).to_have_text(MODEL)
            expect(page.locator("tr[data-alias=champion] .alias-version")).to_have_text("v2")
            expect(page.locator("#metric-chart svg circle")).to_have_count(3)
            page.screenshot(path=str(screenshots / "2-model-before-rollback.png"), full_page=True)

            rollback = page.locator("form.rollback[data-alias=champion]")
            rollback.locator("textarea[name=reason]").fill("v2 degrades on new customers")
            questions = []
            page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
            rollback.get_by_role("button", name="Roll back champion to v1", exact=True).click()

            expect(page.locator("tr[data-alias=champion] .alias-version")).to_have_text("v1", timeout=30_000)
            newest = page.locator("#history li").first
            expect(newest).to_contain_text("rollback")
            expect(newest).to_contain_text("v2 → v1")
            expect(newest.locator(".actor")).to_have_text("admin")
            expect(newest.locator(".reason")).to_have_text("v2 degrades on new customers")
            page.screenshot(path=str(screenshots / "3-model-after-rollback.png"), full_page=True)

            page.goto(f"{ui.base_url}/mlops/models")
            expect(page.locator(f"tr[data-model={MODEL}] td.champion")).to_contain_text("v1")
            page.screenshot(path=str(screenshots / "4-models-after-rollback.png"))

            # The monitoring page: realized and estimated roc_auc drawn against the threshold.
            page.click(f"text={MODEL}")
            page.click("#monitoring-link")
            chart = page.locator("#performance-roc_auc svg")
            expect(chart.locator(".series circle")).to_have_count(4)
            expect(chart.locator(".series circle.breach")).to_have_count(1)
            expect(chart.locator(".reference.threshold title")).to_have_text("threshold min: 0.85")
            page.screenshot(path=str(screenshots / "5-monitoring.png"), full_page=True)
        finally:
            browser.close()
    assert ui.registry.aliases(MODEL)["champion"] == 1
    assert questions == ["Roll back 'champion' from v2 to v1?"]
    event = ui.registry.history(MODEL, "champion")[-1]
    assert (event.kind, event.actor, event.reason) == ("rollback", "admin", "v2 degrades on new customers")


def test_plugin_adds_the_nav_entry_and_the_dag_run_tab(ui):
    plugins = {p["name"]: p for p in ui.api("GET", "/api/v2/plugins")["plugins"]}
    views = {v["url_route"]: v for v in plugins["airflow_mlops_registry"]["external_views"]}
    assert views["mlops-models"]["destination"] == "nav" and views["mlops-models"]["href"] == "/mlops/models"
    # Airflow fills in {DAG_ID} and {RUN_ID} on each DAG run page; the link lands on that run's versions.
    assert views["mlops-run"]["destination"] == "dag_run"
    href = views["mlops-run"]["href"].replace("{DAG_ID}", "churn__retrain").replace("{RUN_ID}", "manual__v2")
    status, _, page = call(ui, "GET", href, token=ui.token("viewer"))
    assert status == 200 and b"/mlops/models/churn/versions/2" in page


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_browser_pages_in_light_and_dark_mode(ui, screenshots, scheme):
    """Every page in both colour schemes, with what issue 20 asked of them: batch runs on the model page,
    versions paged by number, the promote form preselecting the newest version that passed its gate and
    warning about one that failed, data compared by fingerprint, slices as tables, threshold lines."""
    from playwright.sync_api import expect, sync_playwright

    model_url = f"{ui.base_url}/mlops/models/{MODEL}"
    with sync_playwright() as playwright:
        browser = _chromium(playwright)
        try:
            page = _logged_in_page(ui, browser, scheme)
            page.goto(f"{ui.base_url}/mlops/models")
            expect(page.locator(f"tr[data-model={MODEL}] td.champion")).to_contain_text("v")
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == ("rgb(17, 17, 19)" if scheme == "dark" else "rgb(250, 250, 250)")
            page.screenshot(path=str(screenshots / f"{scheme}-1-models.png"), full_page=True)

            page.goto(model_url)
            runs = page.locator("#scoring-runs")
            expect(runs.locator("tr[data-run=scheduled__w1]")).to_contain_text("1,000")
            expect(runs.locator("tr[data-run=scheduled__w1] a").first).to_have_attribute(
                "href", "/dags/churn__batch_inference/runs/scheduled__w1")
            href = runs.locator("tr[data-run=scheduled__w0] a.manifest").get_attribute("href")
            assert href.startswith("/mlops/manifests?uri=") and href.endswith("_manifest.json")
            promote = page.locator("#promote-form")
            select = promote.locator("select[name=version]")
            expect(select).to_have_value("2")  # v3 is newer but failed its gate
            expect(select.locator("option[value='3']")).to_have_text("v3 ⚠ failed its gate")
            expect(page.locator("#promote-warning")).to_be_hidden()
            select.select_option("3")
            expect(page.locator("#promote-warning")).to_be_visible()
            expect(page.locator("#promote-warning")).to_contain_text("v3 failed its gate")
            expect(page.locator("tr[data-version='3'] td.gate")).to_have_text("failed its gate")
            expect(page.locator("#metric-chart .reference.threshold title")).to_have_text("gate min: 0.85")
            expect(page.locator("#drift-chart .reference.threshold title")).to_have_text("drift threshold: 0.5")
            page.screenshot(path=str(screenshots / f"{scheme}-2-model.png"), full_page=True)

            # Two versions a page: newest first, then the older page by the link, and back.
            page.goto(f"{model_url}?limit=2")
            expect(page.locator("#versions tr[data-version]")).to_have_count(2)
            expect(page.locator("#versions tr[data-version]").first).to_have_attribute("data-version", "3")
            page.click("#older-versions")
            expect(page.locator("#versions tr[data-version]")).to_have_count(1)
            expect(page.locator("#versions tr[data-version]").first).to_have_attribute("data-version", "1")
            expect(page.locator("#older-versions")).to_have_count(0)
            page.click("#newer-versions")
            expect(page.locator("#versions tr[data-version]").first).to_have_attribute("data-version", "3")

            page.goto(f"{model_url}/versions/1")
            slices = page.locator(".evaluation table.slices").first
            expect(slices.locator("tr[data-slice='plan=basic']")).to_contain_text("40")
            expect(slices.locator("tr[data-slice='plan=trial']")).to_contain_text("not scored")
            assert "{" not in page.locator(".evaluation").first.inner_text()
            page.screenshot(path=str(screenshots / f"{scheme}-3-version.png"), full_page=True)

            page.goto(f"{model_url}/compare?a=1&b=2")
            test_data = page.locator("#compare-lineage tr[data-key='test data']")
            expect(test_data.locator(".same-data")).to_have_text(f"same data (fingerprint {'e' * 12})")
            expect(test_data).not_to_have_class("differs")
            expect(page.locator("#compare-lineage tr[data-key='train data']")).to_have_class("differs")
            page.screenshot(path=str(screenshots / f"{scheme}-4-compare.png"), full_page=True)

            page.goto(f"{model_url}/monitoring")
            expect(page.locator("#performance-roc_auc svg .reference.threshold title")).to_have_text("threshold min: 0.85")
            page.screenshot(path=str(screenshots / f"{scheme}-5-monitoring.png"), full_page=True)
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_browser_model_card_and_cost(ui, screenshots, scheme):
    """The model page charts training cost per version and scoring cost per million rows; the version page
    links its model card, which renders every section, light and dark."""
    from playwright.sync_api import expect, sync_playwright

    model_url = f"{ui.base_url}/mlops/models/{MODEL}"
    with sync_playwright() as playwright:
        browser = _chromium(playwright)
        try:
            page = _logged_in_page(ui, browser, scheme)
            page.goto(model_url)
            expect(page.locator("#training-cost-chart svg .primary circle")).to_have_count(3)
            expect(page.locator("#training-cost-chart svg .reference.median title")).to_have_text("median: 40")
            expect(page.locator("#scoring-cost-chart svg .series circle")).to_have_count(2)
            expect(page.locator("tr[data-version='2'] td.training-cost")).to_have_text("40 CPU-s · 20 s wall · 512 MiB peak")
            expect(page.locator("#scoring-runs tr[data-run=scheduled__w1] td.cpu-per-million")).to_have_text("4000")
            page.locator("#cost").screenshot(path=str(screenshots / f"{scheme}-cost.png"))

            page.goto(f"{model_url}/versions/2")
            expect(page.locator("#training-cost")).to_have_text("40 CPU-s · 20 s wall · 512 MiB peak")
            link = page.locator("#card-link")
            expect(link).to_have_attribute("href", f"/mlops/models/{MODEL}/versions/2/card")

            page.goto(f"{model_url}/versions/2/card")
            expect(page.locator("h1")).to_have_text(f"Model card: {MODEL} v2")
            for section in ("purpose", "training-data", "metrics", "explanations", "gate", "lineage", "alias-history",
                            "cost"):
                expect(page.locator(f"section#{section}")).to_be_visible()
            expect(page.locator("#training-data")).to_contain_text("2" * 64)
            expect(page.locator("#metrics")).to_contain_text("plan=basic")
            expect(page.locator("#metrics")).to_contain_text("0.92")
            expect(page.locator("#gate .badge")).to_have_text("passed")
            expect(page.locator("#lineage")).to_contain_text("abc2")
            expect(page.locator("#alias-history")).to_contain_text("beats v1 on roc_auc")
            expect(page.locator("#alias-history")).to_contain_text("approved by bob")
            expect(page.locator("#cost")).to_contain_text("40 CPU-s")
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == ("rgb(26, 32, 44)" if scheme == "dark" else "rgb(255, 255, 255)")
            page.screenshot(path=str(screenshots / f"{scheme}-model-card.png"), full_page=True)
        finally:
            browser.close()
    card = get_json(ui, f"/mlops/api/models/{MODEL}/versions/2/card", user="viewer")
    assert card["model"]["version"] == 2 and card["cost"]["cpu_seconds"] == 40.0
    assert (ui.root / "mlops" / "models" / MODEL / "2" / "model_card.html").is_file()
