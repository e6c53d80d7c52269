"""Response models: what the OpenAPI schema (``/openapi.json``) promises is what the endpoints send."""

from __future__ import annotations

from pydantic import BaseModel, Field

from mldeploy.store import Change


class ErrorDetail(BaseModel):
    type: str = Field(description="the error's class, e.g. NotAnImageError")
    message: str


class ErrorBody(BaseModel):
    """Every error, whatever its status."""

    error: ErrorDetail


class Detection(BaseModel):
    label: str
    class_id: int
    confidence: float
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the uploaded image")


class Prediction(BaseModel):
    model: str
    version: str = Field(description="the version that answered, e.g. faces@v2")
    route: str = Field(description="live or canary")
    request_id: str = Field(description="the X-Request-Id sent, else one made by the server: quote it when labelling later (mldeploy capture label)")
    count: int
    counts: dict[str, int]
    width: int
    height: int
    detections: list[Detection]
    image: str | None = Field(None, description="the annotated JPEG as a data: URL, with ?image=1")


def errors(*statuses: int) -> dict[int | str, dict]:
    """``responses=`` for a route: each status with the one error body."""
    return {status: {"model": ErrorBody} for status in statuses}


# -- what the other endpoints answer (documented with responses=..., so the OpenAPI document has a schema
#    for each; tests/server/test_openapi.py checks live answers against it) ------------------------------
class VersionInfo(BaseModel):
    ref: str
    backend: str
    classes: list[str] | int = Field(description="the class names, or how many when more than 10")
    available: bool = Field(description="its files are here")


class Routing(BaseModel):
    live: str
    shadow: str | None
    canary: str | None
    canary_weight: float = Field(description="percent of clients on the canary")
    serve_version: str | None = Field(description="the version this replica serves by --serve-version, while not live")


class ServedModel(Routing):
    name: str
    endpoints: list[str]
    versions: list[VersionInfo]


class ModelList(BaseModel):
    default: str = Field(description="the model /predict answers with")
    models: list[ServedModel]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str = Field(description="ready; while loading or stopping the answer is 503 with status 'starting or stopping'")
    models: dict[str, str] | None = Field(None, description="each served model's live version")


class ShadowPair(BaseModel):
    live: str
    shadow: str
    captured: int
    compared: int
    errors: int
    pending: int
    evicted: int
    coverage: float | None
    disagreeing: int
    disagreement: float | None
    precision: float | None
    recall: float | None
    mean_iou: float | None
    drift: float | None
    boxes: dict[str, float]
    since: str | None
    updated: str | None


class ShadowReport(BaseModel):
    model: str
    shadow: str | None
    pairs: list[ShadowPair]


class LabelFigures(BaseModel):
    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    ap50: float | None


class VersionAccuracy(BaseModel):
    version: str
    requests: int = Field(description="labelled requests it answered")
    precision: float | None
    recall: float | None
    map50: float | None
    map: float | None
    per_label: dict[str, LabelFigures]


class Accuracy(BaseModel):
    model: str
    requests: int
    labelled: int
    versions: list[VersionAccuracy]
    note: str | None = None


class RoutingChange(BaseModel):
    changed: bool | None = None
    change: Change | None = None  # the store's history row, as its dataclass declares it
    routing: Routing


class VerdictBody(BaseModel):
    status: str = Field(description="pass, fail, inconclusive or report-only")
    headline: str
    deciding: list[str]
    let_through: list[str]
    also_inconclusive: list[str]
    not_measured: list[str]


class GateBody(BaseModel):
    gate: str
    flag: str
    kind: str
    bound: float
    value: float | None
    status: str
    passed: bool
    message: str
    interval: list[float | None] | None = None
    images: int | None = None


class Analysis(BaseModel):
    model: str
    verdict: VerdictBody
    gates: list[GateBody]
    canary: dict[str, str | int | float | None] | None = Field(description="version, requests, errors, error_rate, p95_ms")
    shadow: dict[str, str | int | float | None] | None = Field(description="live, shadow, compared, errors, precision, recall, drift, disagreement")
    notes: list[str]


class PostRollout(BaseModel):
    phase: str
    changed: bool
    routing: Routing


def ok(model: type[BaseModel], *statuses: int, description: str = "OK") -> dict[int | str, dict]:
    """``responses=`` for a JSON endpoint: its 200 schema, and the error body for each status."""
    return {200: {"model": model, "description": description}, **errors(*statuses)}
