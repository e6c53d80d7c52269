"""Admin endpoints: promote, roll back, route (shadow / canary). Token required (``MLDEPLOY_ADMIN_TOKEN``),
checked by the app before the request's body is read (:func:`require_token`, from a middleware).

They write to the same state store as the CLI; the watcher applies the change, and the response
waits for that, so the next request already sees it.
"""

from __future__ import annotations

import hmac
from typing import Optional

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from mldeploy.errors import AdminAuthError
from mldeploy.server.dependencies import served_model
from mldeploy.server.schemas import Analysis, PostRollout, RoutingChange, errors, ok

#: The admin token, as OpenAPI states it (a bearer token). The check itself runs in a middleware, before
#: any of the request is read (:func:`require_token`); this only documents it for generated clients.
bearer = HTTPBearer(auto_error=False, scheme_name="adminToken", description="MLDEPLOY_ADMIN_TOKEN, as 'Authorization: Bearer <token>'")
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Security(bearer)])


def require_token(request: Request) -> None:
    token = request.app.state.config.admin_token
    if not token:
        raise AdminAuthError("admin endpoints are off: start the server with MLDEPLOY_ADMIN_TOKEN set")
    given = request.headers.get("authorization", "")
    given = given[7:] if given.lower().startswith("bearer ") else request.headers.get("x-admin-token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise AdminAuthError("missing or wrong admin token (send 'Authorization: Bearer <token>')")


class PromoteBody(BaseModel):
    version: str
    reason: str = ""


class RollbackBody(BaseModel):
    reason: str = ""


class RouteBody(BaseModel):
    shadow: Optional[str] = Field(None, description="version to shadow; null stops the shadow")
    canary: Optional[str] = Field(None, description="canary version; null stops the canary")
    weight: float = Field(0.0, ge=0, le=100, description="percent of clients on the canary")
    reason: str = ""


def _change(dataclass_row) -> dict:
    from dataclasses import asdict

    return asdict(dataclass_row)


@router.post("/models/{name}/promote", responses=ok(RoutingChange, 401, 404, 422, 503))
async def promote(body: PromoteBody, request: Request, name: str = Depends(served_model)):
    from mldeploy.rollout.releases import promote as do_promote

    deployments = request.app.state.deployments

    def work():
        spec = deployments.project.registry().resolve(f"{name}@{body.version}")
        change = do_promote(deployments.project, spec, reason=body.reason, command=f"POST /admin/models/{name}/promote")
        deployments.refresh()
        return change

    change = await run_in_threadpool(work)
    return {"changed": change is not None, "change": _change(change) if change else None, "routing": deployments.plans[name].describe()}


@router.post("/models/{name}/rollback", responses=ok(RoutingChange, 401, 404, 409, 422))
async def rollback(request: Request, name: str = Depends(served_model), body: RollbackBody | None = None):
    from mldeploy.rollout.releases import rollback as do_rollback

    deployments = request.app.state.deployments

    def work():
        change = do_rollback(deployments.project, name, reason=(body.reason if body else ""), command=f"POST /admin/models/{name}/rollback")
        deployments.refresh()
        return change

    change = await run_in_threadpool(work)
    return {"changed": True, "change": _change(change), "routing": deployments.plans[name].describe()}


@router.post("/models/{name}/route", responses=ok(RoutingChange, 401, 404, 422))
async def route(body: RouteBody, request: Request, name: str = Depends(served_model)):
    from mldeploy.rollout.releases import set_route
    from mldeploy.store import KEEP

    deployments = request.app.state.deployments
    given = body.model_fields_set  # a field left out keeps its current setting

    def work():
        set_route(deployments.project, name, shadow=body.shadow if "shadow" in given else KEEP,
                  canary=body.canary if "canary" in given else KEEP, weight=body.weight if "weight" in given else None,
                  reason=body.reason, command=f"POST /admin/models/{name}/route")
        deployments.refresh()

    await run_in_threadpool(work)
    return {"routing": deployments.plans[name].describe()}


async def _judge(request: Request, name: str):
    """The fleet-wide verdict on ``name``'s live canary and shadow, with bounds from the query string."""
    from mldeploy.errors import UsageError
    from mldeploy.rollout.analysis import CANARY_GATES, SHADOW_GATES, analyse, bounds_from, canary_under_test

    deployments = request.app.state.deployments
    plan = deployments.plans[name]
    query = dict(request.query_params)
    asked = query.get("canary") or None
    if asked is not None:  # a version of this model, or 404 naming it
        await run_in_threadpool(deployments.project.registry().resolve, f"{name}@{asked}")
    store = deployments.project.store()
    canary, notes = await run_in_threadpool(canary_under_test, store, name, plan.live.version,
                                            plan.canary.version if plan.canary is not None else None, asked)
    canary_bounds = bounds_from(query, CANARY_GATES) or (request.app.state.config.canary_bounds or None)
    shadow_bounds = bounds_from(query, SHADOW_GATES) or None
    counts = {}
    for key in ("min_requests", "min_compared"):
        if key in query:
            try:
                counts[key] = max(1, int(query[key]))
            except ValueError:
                raise UsageError(f"{key}={query[key]!r}: a whole number") from None
    await run_in_threadpool(deployments.mirror.flush)  # this replica's shadow counts, written before judging
    return await run_in_threadpool(lambda: analyse(store, name, plan.live.version, canary, plan.shadow.version if plan.shadow is not None else None,
                                                   canary_bounds=canary_bounds, shadow_bounds=shadow_bounds, notes=notes, **counts))


def analysis_to_dict(name: str, result) -> dict:
    from mldeploy.report.serialize import gate_to_dict, verdict_to_dict

    return {"model": name, "verdict": verdict_to_dict(result.verdict), "gates": [gate_to_dict(g) for g in result.verdict.ran],
            "canary": result.canary, "shadow": result.shadow, "notes": result.notes}


@router.get("/models/{name}/analysis", responses=ok(Analysis, 400, 401, 404, 503))
async def analysis(request: Request, name: str = Depends(served_model)):
    """The verdict on the live canary and shadow of ``name``, fleet-wide (every replica's counts, from the
    state store), with the gates of ``mldeploy shadow``: ``{"verdict": {"status": "pass" | "fail" |
    "inconclusive", ...}, "gates": [...], "canary": {...}, "shadow": {...}}``. Bounds may be given as
    query parameters (``max_error_rate``, ``max_p95_ms``, ``min_precision``, ``min_recall``,
    ``max_drift``, ...), with ``min_requests`` and ``min_compared`` for the evidence needed. The canary
    judged is ``?canary=VERSION``, else the state's, else the version replicas serve by ``serve
    --serve-version`` (a rollout controller's pods). For Argo Rollouts' web metric (``mldeploy export argo``)."""
    return analysis_to_dict(name, await _judge(request, name))


#: Flagger's webhooks: Flagger sends no headers, so the admin token comes in the payload's metadata.
flagger = APIRouter(prefix="/flagger", tags=["admin"])


async def _flagger_payload(request: Request) -> dict:
    """The webhook's JSON payload, once its metadata's token is checked."""
    import json

    token = request.app.state.config.admin_token
    try:
        payload = json.loads(await request.body() or b"{}")
    except ValueError:
        payload = {}
    given = str((payload.get("metadata") or {}).get("token", "")) if isinstance(payload, dict) else ""
    if not token:
        raise AdminAuthError("admin endpoints are off: start the server with MLDEPLOY_ADMIN_TOKEN set")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise AdminAuthError("missing or wrong admin token (Flagger: put it in the webhook's metadata as token)")
    return payload


async def _flagger_verdict(request: Request, name: str):
    await _flagger_payload(request)
    return await _judge(request, name)


@flagger.post("/models/{name}/confirm-promotion", responses={**ok(Analysis, 401, 404), 412: {"model": Analysis, "description": "not a pass: Flagger waits"}})
async def confirm_promotion(request: Request, name: str = Depends(served_model)):
    """Flagger's ``confirm-promotion`` webhook: 200 only when the verdict is a pass (412 otherwise, and
    Flagger waits)."""
    from fastapi.responses import JSONResponse

    result = await _flagger_verdict(request, name)
    return JSONResponse(analysis_to_dict(name, result), status_code=200 if result.verdict.status == "pass" else 412)


@flagger.post("/models/{name}/rollback", responses={**ok(Analysis, 401, 404), 412: {"model": Analysis, "description": "not a fail: no rollback"}})
async def flagger_rollback(request: Request, name: str = Depends(served_model)):
    """Flagger's ``rollback`` webhook: 200 (roll back) only when the verdict is a fail; 412 otherwise."""
    from fastapi.responses import JSONResponse

    result = await _flagger_verdict(request, name)
    return JSONResponse(analysis_to_dict(name, result), status_code=200 if result.verdict.status == "fail" else 412)


@flagger.post("/models/{name}/post-rollout", responses=ok(PostRollout, 400, 401, 404))
async def post_rollout(request: Request, name: str = Depends(served_model)):
    """Flagger's ``post-rollout`` webhook, called once the rollout ended: on ``"phase": "Succeeded"`` the
    version its pods served (``?canary=``, else the one served by ``--serve-version``) is promoted in the
    state, so the history says what went live and when; on ``Failed`` the history records the controller's
    rollback and the canary's figures are cleared."""
    from mldeploy.errors import UsageError
    from mldeploy.rollout.analysis import canary_under_test
    from mldeploy.rollout.releases import promote as do_promote, set_route

    payload = await _flagger_payload(request)
    phase = str(payload.get("phase", ""))
    deployments = request.app.state.deployments
    plan = deployments.plans[name]
    where = f"Flagger canary {payload.get('namespace', '?')}/{payload.get('name', '?')}"

    def work():
        canary, _ = canary_under_test(deployments.project.store(), name, plan.live.version, plan.canary.version if plan.canary is not None else None,
                                      request.query_params.get("canary") or None)
        change = None
        if phase == "Succeeded":
            if canary is None:
                raise UsageError(f"{where} succeeded, but no replica serves a version of {name} other than the live one: nothing to promote")
            spec = deployments.project.registry().resolve(f"{name}@{canary}")
            change = do_promote(deployments.project, spec, reason=f"{where} promoted it", command=f"POST /flagger/models/{name}/post-rollout")
        elif phase == "Failed":
            change = set_route(deployments.project, name, canary=None, action="canary-rollback", command=f"POST /flagger/models/{name}/post-rollout",
                               reason=f"{where} rolled back{f' {name}@{canary}' if canary else ''}")
        else:
            raise UsageError(f"post-rollout phase {phase!r}: expected Succeeded or Failed")
        deployments.refresh()
        return change

    change = await run_in_threadpool(work)
    return {"phase": phase, "changed": change is not None, "routing": deployments.plans[name].describe()}
