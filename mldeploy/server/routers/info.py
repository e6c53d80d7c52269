"""``GET /models``, ``/models/{name}/shadow``, ``/models/{name}/accuracy``, ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from mldeploy.compare import AgreementCounts
from mldeploy.server.dependencies import served_model
from mldeploy.server.schemas import Accuracy, Health, ModelList, Ready, ShadowReport, errors, ok

router = APIRouter(tags=["info"])


@router.get("/models", responses=ok(ModelList))
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


@router.get("/models/{name}/shadow", responses=ok(ShadowReport, 404))
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


@router.get("/models/{name}/accuracy", responses=ok(Accuracy, 404))
async def accuracy(request: Request, name: str = Depends(served_model)):
    """Each version's accuracy on the requests it answered that have labels (``mldeploy capture label``
    on this server's ``--capture`` folder): precision, recall and mAP, per version that answered."""
    from mldeploy.rollout.feedback import score_recorded

    deployments = request.app.state.deployments
    capturer = deployments.capturer
    if capturer is None or not capturer.persistent:
        return {"model": name, "requests": 0, "labelled": 0, "versions": [],
                "note": "this server keeps no capture: start it with --capture DIR, then attach labels with 'mldeploy capture label DIR'"}
    registry = deployments.project.registry(with_live=False)
    classes = list(dict.fromkeys(c for spec in registry.versions(name) for c in spec.classes))
    scores = await run_in_threadpool(score_recorded, capturer.store, name, classes, label_map=None,
                                     project_map=deployments.project.settings.label_map)
    return {"model": name, "requests": scores.requests, "labelled": scores.labelled,
            "versions": [{k: v for k, v in row.to_dict().items() if k not in ("answers", "window")} for row in scores.rows]}


@router.get("/healthz", responses=ok(Health))
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", responses={200: {"model": Ready, "description": "every model loaded"}, 503: {"model": Ready, "description": "loading or stopping"}})
async def readyz(request: Request):
    deployments = request.app.state.deployments
    if not deployments.ready:
        return JSONResponse({"status": "starting or stopping"}, status_code=503)
    return {"status": "ready", "models": {name: plan.live.ref for name, plan in deployments.plans.items()}}


_PROMETHEUS = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}}


@router.head("/metrics", include_in_schema=False)
async def metrics_head(request: Request):
    """The same headers as GET, no body: a scraper's or a load balancer's check."""
    return await metrics(request)


@router.get("/metrics", response_class=PlainTextResponse, responses=_PROMETHEUS)
async def metrics(request: Request):
    """Prometheus text format (HEAD answers the same headers)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    await run_in_threadpool(request.app.state.deployments.refresh_metrics)  # a query of the capture: not on the event loop
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
