"""Response models: what the OpenAPI schema (``/openapi.json``) promises is what the endpoints send."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
