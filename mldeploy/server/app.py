"""``create_app(config)``: composes the routers; models load in the lifespan, never at import."""

from __future__ import annotations

import contextlib
import logging

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from mldeploy import __version__
from mldeploy.errors import AdminAuthError
from mldeploy.server import errors
from mldeploy.server.config import ServerConfig
from mldeploy.server.deployments import Deployments
from mldeploy.server.metrics import Metrics
from mldeploy.server.routers import admin, info, page, predict
from mldeploy.server import schemas
from mldeploy.server.uploads import RequestGuard

log = logging.getLogger("mldeploy.server")


def _route_text(route: dict) -> str:
    """``live faces@v1, shadow faces@v2, canary faces@v3 at 10%`` (off parts left out)."""
    parts = [f"live {route['live']}"]
    if route.get("shadow"):
        parts.append(f"shadow {route['shadow']}")
    if route.get("canary"):
        parts.append(f"canary {route['canary']} at {route.get('canary_weight', 0):g}%")
    return ", ".join(parts)


def create_app(config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    metrics = Metrics()
    deployments = Deployments(config, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if not deployments.ready:  # `mldeploy serve` started them before the server: a failure there is one line and its exit code
            await run_in_threadpool(deployments.start)  # loads every version in use, once
        routes = {name: plan.describe() for name, plan in deployments.plans.items()}
        log.info("serving %s", "; ".join(f"{name}: {_route_text(r)}" for name, r in routes.items()), extra={"routes": routes})
        try:
            yield
        finally:
            await run_in_threadpool(deployments.stop)

    # No /docs or /redoc: Swagger UI and ReDoc load their scripts from a CDN, so offline they render a
    # blank page. The schema itself is served at /openapi.json, and the README lists every endpoint.
    app = FastAPI(title="mldeploy", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Object detection with live shadow, canary and blue-green routing.")
    app.state.config = config
    app.state.metrics = metrics
    app.state.deployments = deployments
    errors.install(app)
    app.add_middleware(RequestGuard, max_bytes=config.max_upload_bytes, body_timeout=config.body_timeout)

    @app.middleware("http")
    async def admin_token_first(request, call_next):
        """The admin token is checked before anything of the request is read: no body parsing for strangers."""
        if request.url.path.startswith("/admin/"):
            try:
                admin.require_token(request)
            except AdminAuthError as exc:
                metrics.errors.labels("/admin", "", str(exc.http_status), type(exc).__name__).inc()
                return errors.error_response(exc.http_status, type(exc).__name__, str(exc))
        return await call_next(request)

    @app.middleware("http")
    async def version_header(request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Mldeploy-Version", __version__)
        return response

    for router in (predict.router, info.router, admin.router, admin.flagger, page.router):
        app.include_router(router)
    for name in config.models:  # with and without the trailing slash: curl does not follow a 307 for a POST
        for path in (f"/count-{name}/", f"/count-{name}"):
            app.add_api_route(path, predict.count_endpoint(name), methods=["POST"], tags=["count"], summary=f"Count what {name} finds",
                              response_model=schemas.Prediction, responses=schemas.errors(408, 413, 415, 422, 503),
                              include_in_schema=path.endswith("/"))
    return app
