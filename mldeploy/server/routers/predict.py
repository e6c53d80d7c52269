"""``POST /predict``, ``POST /models/{name}/predict`` and ``POST /count-{name}/``."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from typing import Optional

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from mldeploy.errors import BadRequestIdError, InferenceTimeoutError
from mldeploy.report.serialize import detections_to_list
from mldeploy.server.dependencies import served_model
from mldeploy.server.schemas import Prediction, errors

router = APIRouter(tags=["predict"])


def client_id(request: Request) -> str:
    """Canary stickiness key: the ``X-Client-Id`` header, else the client's address."""
    return request.headers.get("x-client-id") or (request.client.host if request.client else "unknown")


#: A client's request id: what a labelling system can quote back later (``mldeploy capture label``).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def request_id(request: Request) -> str:
    """The ``X-Request-Id`` the client sent (checked: up to 128 letters, digits and ``._:@/+=-``), else a new one."""
    given = request.headers.get("x-request-id")
    if given is None:
        return uuid.uuid4().hex
    if not _REQUEST_ID.fullmatch(given):
        raise BadRequestIdError("X-Request-Id: at most 128 letters, digits and . _ : @ / + = - (or leave it out: the server makes one)")
    return given


def wants_json(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "json"
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "image/" not in accept


async def answer(request: Request, name: str, file: UploadFile, as_json: bool, with_image: bool = False) -> Response:
    """Validate the upload, let the deployments pick and run a version (on a worker thread), respond.

    ``with_image`` adds the annotated JPEG to the JSON (a data: URL): the page gets boxes and counts
    from one request, so one click is one inference."""
    deployments = request.app.state.deployments
    with deployments.serving():
        return await _answer(request, deployments, name, file, as_json, with_image)


async def _answer(request: Request, deployments, name: str, file: UploadFile, as_json: bool, with_image: bool) -> Response:
    from mldeploy.server.uploads import read_image_upload

    metrics = request.app.state.metrics
    config = request.app.state.config
    started = time.perf_counter()
    rid = request_id(request)
    image, data = await read_image_upload(file, config.max_pixels)
    try:
        served = await asyncio.wait_for(run_in_threadpool(deployments.detect, name, image, client_id(request)), config.request_timeout)
    except asyncio.TimeoutError:
        raise InferenceTimeoutError(f"{name} did not answer within {config.request_timeout:g} s; try a smaller image") from None
    spec, route, detections, seconds = served.spec, served.route, served.detections, served.seconds
    headers = {"X-Model": name, "X-Model-Version": spec.ref, "X-Route": route, "X-Detections": str(len(detections)),
               "X-Inference-Ms": f"{seconds * 1000:.1f}", "X-Request-Id": rid}
    if as_json:
        body = {"model": name, "version": spec.ref, "route": route, "request_id": rid, "count": len(detections), "counts": detections.counts(),
                "width": detections.image_size[0], "height": detections.image_size[1], "detections": detections_to_list(detections)}
        if with_image:
            jpeg = await run_in_threadpool(_annotated_jpeg, image, detections)
            body["image"] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        response: Response = JSONResponse(body, headers=headers)
    else:
        jpeg = await run_in_threadpool(_annotated_jpeg, image, detections)
        response = Response(jpeg, media_type="image/jpeg", headers=headers)
    metrics.requests.labels(name, spec.version, route, "200").inc()
    metrics.latency.labels(name, spec.version).observe(time.perf_counter() - started)
    capture = deployments.capture_task(served, data, rid)
    if capture is not None:  # after the response is sent: capturing never adds to the client's latency
        response.background = BackgroundTask(capture)  # a plain function: run on a worker thread
    return response


def _annotated_jpeg(image, detections) -> bytes:
    from mldeploy.annotate import BoxAnnotator, encode_image

    return encode_image(BoxAnnotator().annotate(image, detections), ".jpg")


_FORMAT = Query(None, pattern="^(json|image)$", description="json for detections, image for the annotated JPEG [default: by Accept header, else image]")
_IMAGE = Query(False, description="with json: the annotated JPEG too, as a data: URL in 'image'")
#: What a prediction answers: the annotated JPEG, or the detections as JSON; and the errors it can give.
PREDICT_RESPONSES = {
    200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}, "application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}},
          "description": "the annotated JPEG, or with format=json the detections", "model": Prediction},
    **errors(404, 408, 413, 415, 422, 503),
}


@router.post("/predict", summary="Detect with the default model", responses=PREDICT_RESPONSES, response_class=Response)
async def predict_default(request: Request, file: UploadFile = File(...), format: Optional[str] = _FORMAT, image: bool = _IMAGE):
    return await answer(request, request.app.state.config.default_model, file, wants_json(request, format), image)


@router.post("/models/{name}/predict", summary="Detect with one served model", responses=PREDICT_RESPONSES, response_class=Response)
async def predict_model(request: Request, name: str = Depends(served_model), file: UploadFile = File(...), format: Optional[str] = _FORMAT,
                        image: bool = _IMAGE):
    return await answer(request, name, file, wants_json(request, format), image)


def count_endpoint(name: str):
    async def count(request: Request, file: UploadFile = File(...)):
        return await answer(request, name, file, as_json=True)

    count.__name__ = f"count_{name.replace('-', '_')}"
    count.__doc__ = f"How many objects {name} finds: model, version, count and detections as JSON."
    return count
