"""The registry UI: a FastAPI app the api-server mounts at /mlops (pages and a JSON API).

Plugin apps are not behind Airflow's own authentication, so every route asks
Airflow for the caller itself: `get_user` reads the same JWT as /api/v2 (the
`Authorization: Bearer` header, or the UI's `_token` cookie) and the auth
manager decides. Reading needs a logged-in user; moving an alias needs the
right to edit the model's retraining DAG. The app is built on its first
request, so loading the plugin in other Airflow components costs nothing.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, whose types are local names.
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

URL_PREFIX = "/mlops"
TEMPLATES = Path(__file__).parent / "templates"
# Reports may run their own scripts (Evidently's charts) but only in an opaque
# origin: they can read neither the Airflow session nor our API.
REPORT_CSP = "sandbox allow-scripts; default-src 'self' 'unsafe-inline' data:; connect-src 'none'"
# Manifests are data: no script of any kind, and never sniffed as something else.
MANIFEST_CSP = "sandbox; default-src 'none'"
# Model cards are static pages of our own making: their inline style, nothing else.
CARD_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'"


class LazyApp:
    """An ASGI app that builds the real one on its first request."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


def _pipelines() -> dict[str, Any]:
    from airflow.configuration import conf

    from airflow_mlops.config import load_pipeline_configs
    from airflow_mlops.settings import configs_folder

    path = configs_folder(conf.get("core", "dags_folder"))
    if not path.is_dir():
        return {}
    loaded = load_pipeline_configs(path, strict=False)
    return {config.model_name: config for config in loaded.configs.values()}


def _roles(user: Any) -> list[str]:
    """The auth manager's roles of `user`: the simple auth manager gives one `role`, FAB a list of `roles`."""
    roles = [getattr(role, "name", role) for role in getattr(user, "roles", None) or []]
    role = getattr(user, "role", None)
    return [str(r) for r in (*roles, *([role] if role else []))]


def create_app() -> "FastAPI":
    """The FastAPI app of the registry pages and API (imports Airflow's API server)."""
    from typing import Annotated

    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.api_fastapi.core_api.security import GetUserDep
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi import Path as PathParam
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from fastapi.templating import Jinja2Templates
    from pydantic import BaseModel, ConfigDict, Field

    from airflow_mlops.errors import (
        ConflictError,
        ForbiddenMoveError,
        MlopsError,
        NotFoundError,
        StorageError,
    )
    from airflow_mlops.hooks.registry import MlopsRegistryHook
    from airflow_mlops.hooks.store import ArtifactStoreHook
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.ui.views import (
        MAX_REASON_CHARS,
        MAX_VERSIONS_PER_PAGE,
        MODELS_PER_PAGE,
        VERSIONS_PER_PAGE,
        RegistryViews,
    )

    app = FastAPI(title="airflow-mlops registry", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    templates = Jinja2Templates(directory=str(TEMPLATES))
    registries: dict[str | None, ModelRegistry] = {}

    def views() -> RegistryViews:
        url = MlopsRegistryHook().get_url()
        if url not in registries:
            registries[url] = ModelRegistry(url)
        return RegistryViews(registries[url], ArtifactStoreHook().get_conn(), _pipelines())

    ViewsDep = Annotated[RegistryViews, Depends(views)]
    ModelName = Annotated[str, PathParam(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_.-]+$")]
    AliasName = Annotated[str, PathParam(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]
    # Keyset paging: the models after a name; the versions below `before` or above `after`.
    AfterName = Annotated[str | None, Query(max_length=250)]
    Before = Annotated[int | None, Query(ge=1)]
    After = Annotated[int | None, Query(ge=0)]
    Limit = Annotated[int, Query(ge=1, le=MAX_VERSIONS_PER_PAGE)]

    def can_edit(user: Any, registry_views: RegistryViews, name: str) -> bool:
        dag_id = registry_views.permission_dag_id(name)
        details = DagDetails(id=dag_id) if dag_id else None
        return get_auth_manager().is_authorized_dag(method="PUT", details=details, user=user)

    def require_edit(user: Any, registry_views: RegistryViews, name: str) -> None:
        if not can_edit(user, registry_views, name):
            raise HTTPException(403, f"{user.get_name()} may not change the aliases of {name!r}: "
                                     "that needs the right to edit its retraining DAG")

    def same_origin_json(request: Request) -> None:
        # The session cookie also authenticates, so a cross-site page must not be able to post here.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send the request body as application/json")
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise HTTPException(403, f"cross-origin request from {origin} refused")

    @app.exception_handler(MlopsError)
    async def mlops_error(request: Request, exc: MlopsError) -> Response:
        status = (404 if isinstance(exc, NotFoundError | StorageError) else 409 if isinstance(exc, ConflictError)
              else 403 if isinstance(exc, ForbiddenMoveError) else 400)
        if request.url.path.startswith(f"{URL_PREFIX}/api/") or request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return templates.TemplateResponse(request, "error.html", {"status": status, "detail": str(exc)}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if "/api/" in request.url.path:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return templates.TemplateResponse(
            request, "error.html", {"status": exc.status_code, "detail": exc.detail}, status_code=exc.status_code
        )

    def page(request: Request, template: str, user: Any, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, template, {"user": user.get_name(), "prefix": URL_PREFIX, **context})

    # ------------------------------------------------------------------ pages

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse(f"{URL_PREFIX}/models")

    @app.get("/models", response_class=HTMLResponse)
    def models_page(request: Request, user: GetUserDep, registry_views: ViewsDep, after: AfterName = None) -> HTMLResponse:
        return page(request, "models.html", user, overview=registry_views.models_page(after))

    @app.get("/models/{name}", response_class=HTMLResponse)
    def model_page(request: Request, name: ModelName, user: GetUserDep, registry_views: ViewsDep,
                   before: Before = None, after: After = None, limit: Limit = VERSIONS_PER_PAGE) -> HTMLResponse:
        return page(request, "model.html", user,
                    model=registry_views.model(name, older_than=before, newer_than=after, limit=limit),
                    can_edit=can_edit(user, registry_views, name))

    @app.get("/models/{name}/monitoring", response_class=HTMLResponse)
    def monitoring_page(request: Request, name: ModelName, user: GetUserDep, registry_views: ViewsDep) -> HTMLResponse:
        return page(request, "monitoring.html", user, m=registry_views.monitoring(name))

    @app.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
    def version_page(request: Request, name: ModelName, version: Annotated[int, PathParam(ge=1)], user: GetUserDep, registry_views: ViewsDep) -> HTMLResponse:
        return page(request, "version.html", user, name=name, version=registry_views.version(name, version))

    @app.get("/models/{name}/versions/{version}/card")
    def card_page(name: ModelName, version: Annotated[int, PathParam(ge=1)], user: GetUserDep,
                  registry_views: ViewsDep) -> Response:
        return Response(registry_views.card_html(name, version), media_type="text/html",
                        headers={"Content-Security-Policy": CARD_CSP, "X-Content-Type-Options": "nosniff"})

    @app.get("/models/{name}/compare", response_class=HTMLResponse)
    def compare_page(request: Request, name: ModelName, user: GetUserDep, registry_views: ViewsDep,
                     a: Annotated[int, Query(ge=1)], b: Annotated[int, Query(ge=1)]) -> HTMLResponse:
        return page(request, "compare.html", user, comparison=registry_views.compare(name, a, b))

    @app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, dag_id: str, run_id: str, user: GetUserDep, registry_views: ViewsDep) -> HTMLResponse:
        return page(request, "run.html", user, run=registry_views.run(dag_id, run_id))

    @app.get("/reports")
    def report(user: GetUserDep, registry_views: ViewsDep, uri: Annotated[str, Query(max_length=2048)]) -> Response:
        return Response(registry_views.report(uri), media_type="text/html",
                        headers={"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"})

    @app.get("/manifests")
    def manifest(user: GetUserDep, registry_views: ViewsDep, uri: Annotated[str, Query(max_length=2048)]) -> Response:
        return Response(registry_views.manifest(uri), media_type="application/json",
                        headers={"Content-Security-Policy": MANIFEST_CSP, "X-Content-Type-Options": "nosniff"})

    # ------------------------------------------------------------------ API

    class PromoteBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        version: int = Field(ge=1)
        reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)
        expected_version: int | None = Field(None, ge=1, description="where the alias points now, as the caller saw it")

    class RollbackBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)
        expected_version: int | None = Field(None, ge=1, description="where the alias points now, as the caller saw it")

    @app.get("/api/models")
    def api_models(user: GetUserDep, registry_views: ViewsDep, after: AfterName = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = MODELS_PER_PAGE) -> list[dict[str, Any]]:
        return registry_views.models(after=after, limit=limit)

    @app.get("/api/models/{name}")
    def api_model(name: ModelName, user: GetUserDep, registry_views: ViewsDep,
                  before: Before = None, after: After = None, limit: Limit = VERSIONS_PER_PAGE) -> dict[str, Any]:
        model = registry_views.model(name, older_than=before, newer_than=after, limit=limit)
        return {k: v for k, v in model.items() if not k.endswith("_chart")}

    @app.get("/api/models/{name}/monitoring")
    def api_monitoring(name: ModelName, user: GetUserDep, registry_views: ViewsDep) -> dict[str, Any]:
        monitoring = registry_views.monitoring(name)
        return {k: v for k, v in monitoring.items() if k != "charts"}

    @app.get("/api/models/{name}/versions/{version}")
    def api_version(name: ModelName, version: Annotated[int, PathParam(ge=1)], user: GetUserDep, registry_views: ViewsDep) -> dict[str, Any]:
        return registry_views.version(name, version)

    @app.get("/api/models/{name}/versions/{version}/card")
    def api_card(name: ModelName, version: Annotated[int, PathParam(ge=1)], user: GetUserDep,
                 registry_views: ViewsDep) -> dict[str, Any]:
        return registry_views.card(name, version)

    @app.get("/api/models/{name}/compare")
    def api_compare(name: ModelName, user: GetUserDep, registry_views: ViewsDep,
                    a: Annotated[int, Query(ge=1)], b: Annotated[int, Query(ge=1)]) -> dict[str, Any]:
        return registry_views.compare(name, a, b)

    @app.get("/api/runs/{dag_id}/{run_id}")
    def api_run(dag_id: str, run_id: str, user: GetUserDep, registry_views: ViewsDep) -> dict[str, Any]:
        return registry_views.run(dag_id, run_id)

    @app.post("/api/models/{name}/aliases/{alias}", dependencies=[Depends(same_origin_json)])
    def api_promote(name: ModelName, alias: AliasName, body: PromoteBody, user: GetUserDep,
                    registry_views: ViewsDep) -> dict[str, Any]:
        require_edit(user, registry_views, name)
        return registry_views.promote(name, alias, body.version, reason=body.reason, actor=user.get_name(),
                                      roles=_roles(user), expected_version=body.expected_version)

    @app.post("/api/models/{name}/aliases/{alias}/rollback", dependencies=[Depends(same_origin_json)])
    def api_rollback(name: ModelName, alias: AliasName, body: RollbackBody, user: GetUserDep,
                     registry_views: ViewsDep) -> dict[str, Any]:
        require_edit(user, registry_views, name)
        return registry_views.rollback(name, alias, reason=body.reason, actor=user.get_name(),
                                       roles=_roles(user), expected_version=body.expected_version)

    return app
