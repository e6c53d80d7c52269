"""``GET /models``, ``/models/{name}/shadow``, ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from mldeploy.compare import AgreementCounts
from mldeploy.server.dependencies import served_model
from mldeploy.server.schemas import errors

router = APIRouter(tags=["info"])


@router.get("/models")
async def models(request: Request):
    deployments = request.app.state.deployments
    registry = deployments.project.registry(with_live=False)
    out = []
    for name, plan in deployments.plans.items():
        out.append({
            "name": name,
            **plan.describe(),
            "endpoints": [f"/models/{name}/predict", f"/count-{name}/"] + (["/predict"] if name == request.app.state.config.default_model else []),
            "versions": [{"ref": s.ref, "backend": s.backend, "classes": list(s.classes) if len(s.classes) <= 10 else len(s.classes),
                          "available": not s.missing_files()} for s in registry.versions(name)],
        })
    return {"default": request.app.state.config.default_model, "models": out}


@router.get("/models/{name}/shadow", responses=errors(404))
async def shadow_summary(request: Request, name: str = Depends(served_model)):
    """Shadow comparisons recorded for this model (in the state store), per live/shadow pair, with the
    coverage of the traffic: requests captured for the shadow, compared, errors, still pending, evicted."""
    deployments = request.app.state.deployments
    rows = await run_in_threadpool(deployments.shadow_stats, name)
    pairs = []
    for row in rows:
        counts = AgreementCounts.from_row(row)
        pairs.append({
            "live": f"{name}@{row['live_version']}", "shadow": f"{name}@{row['shadow_version']}",
            "captured": row["captured"], "compared": counts.images, "errors": row["errors"], "pending": row["pending"],
            "evicted": row["evicted"], "coverage": counts.images / row["captured"] if row["captured"] else None,
            "disagreeing": counts.disagreeing_images, "disagreement": counts.disagreement,
            "precision": counts.precision, "recall": counts.recall, "mean_iou": counts.mean_iou, "drift": counts.drift,
            "boxes": {k: row[k] for k in ("old_boxes", "new_boxes", "matched", "missing", "extra", "relabelled", "drifted")},
            "since": row["first_at"], "updated": row["updated_at"],
        })
    return {"model": name, "shadow": deployments.plans[name].describe()["shadow"], "pairs": pairs}


@router.get("/healthz")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request):
    deployments = request.app.state.deployments
    if not deployments.ready:
        return JSONResponse({"status": "starting or stopping"}, status_code=503)
    return {"status": "ready", "models": {name: plan.live.ref for name, plan in deployments.plans.items()}}


@router.get("/metrics", response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}})
async def metrics(request: Request):
    from prometheus_client import CONTENT_TYPE_LATEST

    await run_in_threadpool(request.app.state.deployments.refresh_metrics)  # a query of the capture: not on the event loop
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
