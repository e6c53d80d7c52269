"""Conversion of results to plain data (JSON, CSV rows). Lives at the edge, not in the value types."""

from __future__ import annotations

from typing import Any

from mldeploy.detections import Detections
from mldeploy.pipeline import DetectionResult, RunSummary

CSV_COLUMNS = ["image", "model", "width", "height", "label", "class_id", "confidence", "x1", "y1", "x2", "y2", "error"]


def detections_to_list(detections: Detections) -> list[dict[str, Any]]:
    return [
        {
            "label": str(label),
            "class_id": int(class_id),
            "confidence": round(float(conf), 4),
            "box": [round(float(v), 1) for v in box],
        }
        for box, conf, class_id, label in zip(detections.xyxy, detections.confidence, detections.class_id, detections.label)
    ]


def result_to_dict(result: DetectionResult) -> dict[str, Any]:
    out: dict[str, Any] = {"image": result.source, "model": result.model}
    if not result.ok:
        out["error"] = str(result.error)
        out["error_type"] = type(result.error).__name__
        return out
    dets = result.detections
    assert dets is not None
    out.update(
        width=dets.image_size[0],
        height=dets.image_size[1],
        count=len(dets),
        counts=dets.counts(),
        detections=detections_to_list(dets),
        inference_ms=round(result.seconds * 1000, 2),
    )
    if result.saved_to is not None:
        out["saved_to"] = str(result.saved_to)
    return out


def result_to_csv_rows(result: DetectionResult) -> list[dict[str, Any]]:
    base = {"image": result.source, "model": result.model}
    if not result.ok:
        return [{**base, "error": str(result.error)}]
    dets = result.detections
    assert dets is not None
    size = {"width": dets.image_size[0], "height": dets.image_size[1]}
    rows = [
        {**base, **size, "label": d["label"], "class_id": d["class_id"], "confidence": d["confidence"],
         "x1": d["box"][0], "y1": d["box"][1], "x2": d["box"][2], "y2": d["box"][3]}
        for d in detections_to_list(dets)
    ]
    return rows or [{**base, **size}]  # an image with no detections still gets a row


def summary_to_dict(summary: RunSummary) -> dict[str, Any]:
    return {
        "model": summary.model,
        "images": summary.images,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "detections": summary.detections,
        "per_label": dict(summary.per_label.most_common()),
        "wall_seconds": round(summary.wall_seconds, 3),
        "inference_seconds": round(summary.inference_seconds, 3),
        "images_per_second": round(summary.images_per_second, 2),
    }
