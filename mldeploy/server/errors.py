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


def model_label(request: Request) -> str:
    """The served model a request was for (``/models/{name}/...``, ``/count-NAME/``, ``/predict``), else empty."""
    name = request.scope.get("path_params", {}).get("name")
    served = request.app.state.config.models
    if name in served:
        return name
    path = endpoint_label(request)
    if path == "/predict":
        return request.app.state.config.default_model
    if path.startswith("/count-"):
        candidate = path[len("/count-"):].rstrip("/")
        return candidate if candidate in served else ""
    return ""


def _is_prediction(request: Request) -> bool:
    path = endpoint_label(request)
    return path in ("/predict", "/models/{name}/predict") or path.startswith("/count-")


def count_error(request: Request, status: int, kind: str, exc: BaseException | None = None) -> None:
    """Count an error answer: per endpoint and model, and, for a prediction, in the request counter with
    the version and route that failed when one was chosen (so a model's or a canary's error rate is one query)."""
    metrics = request.app.state.metrics
    model = model_label(request)
    metrics.errors.labels(endpoint_label(request), model, str(status), kind).inc()
    if model and _is_prediction(request):
        version, route = getattr(exc, "served_by", ("", ""))
        metrics.requests.labels(model, version, route, str(status)).inc()


def install(app: FastAPI) -> None:

    @app.exception_handler(MldeployError)
    async def domain_error(request: Request, exc: MldeployError):
        status = exc.http_status
        count_error(request, status, type(exc).__name__, exc)
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
        count_error(request, 422, "RequestValidationError")
        return error_response(422, "RequestValidationError", "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        count_error(request, exc.status_code, "HTTPException")
        return error_response(exc.status_code, "HTTPException", str(exc.detail), getattr(exc, "headers", None))
