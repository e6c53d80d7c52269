"""One translation of errors to HTTP: every error is ``{"error": {"type", "message"}}`` with the
status its class carries; 5xx messages are generic (details go to the log)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mldeploy.errors import MldeployError

log = logging.getLogger("mldeploy.server")


def error_response(status: int, kind: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def endpoint_label(request: Request) -> str:
    """The route's template (``/models/{name}/predict``), never the raw path: 300 requests to random model
    names are one series, not 300. A path no route matches is ``unmatched``."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def install(app: FastAPI) -> None:
    metrics = app.state.metrics

    @app.exception_handler(MldeployError)
    async def domain_error(request: Request, exc: MldeployError):
        status = exc.http_status
        metrics.errors.labels(endpoint_label(request), str(status), type(exc).__name__).inc()
        message = str(exc)
        if status >= 500 and not exc.public:
            log.error("%s %s: %s", request.method, request.url.path, exc)
            message = f"{type(exc).__name__}: the server could not answer; see its log"
        return error_response(status, type(exc).__name__, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        metrics.errors.labels(endpoint_label(request), "422", "RequestValidationError").inc()
        return error_response(422, "RequestValidationError", "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        metrics.errors.labels(endpoint_label(request), str(exc.status_code), "HTTPException").inc()
        return error_response(exc.status_code, "HTTPException", str(exc.detail), getattr(exc, "headers", None))
