"""FastAPI dependencies the routers share."""

from __future__ import annotations

from fastapi import Request

from mldeploy.errors import UnknownModelError


def served_model(name: str, request: Request) -> str:
    """The ``{name}`` path parameter, checked once for every route: 404 when this server does not serve it."""
    plans = request.app.state.deployments.plans
    if name not in plans:
        raise UnknownModelError(f"model {name!r} is not served here; served: {', '.join(plans)}")
    return name
