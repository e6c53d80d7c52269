"""Plain-data conversion of results: what --format json/jsonl/csv and --report print."""

import numpy as np

from mldeploy.compare import match
from mldeploy.detections import Detections
from mldeploy.errors import NotAnImageError
from mldeploy.pipeline import DetectionResult, ImageInput
from mldeploy.report.serialize import detections_to_list, result_to_csv_rows, result_to_dict, shadow_record_to_dict
from mldeploy.rollout.shadow import ShadowRecord


def dets(boxes, labels=None, conf=None):
    n = len(boxes)
    labels = labels or ["face"] * n
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), conf or [0.9] * n, [0] * n, labels, (100, 80))


def test_detections_are_rounded_plain_numbers():
    (d,) = detections_to_list(dets([[1.234, 2.26, 50.55, 60.0]], conf=[0.876543]))
    assert d == {"label": "face", "class_id": 0, "confidence": 0.8765, "box": [1.2, 2.3, 50.5, 60.0]}
    assert all(type(v) is float for v in d["box"]) and type(d["class_id"]) is int


def test_a_result_and_a_failure():
    ok = DetectionResult("a.jpg", "faces@v1", dets([[0, 0, 10, 10], [20, 20, 30, 30]]), seconds=0.01234)
    doc = result_to_dict(ok)
    assert (doc["count"], doc["width"], doc["height"], doc["inference_ms"], doc["counts"]) == (2, 100, 80, 12.34, {"face": 2})
    failed = DetectionResult("b.jpg", "faces@v1", error=NotAnImageError("not an image"))
    assert result_to_dict(failed) == {"image": "b.jpg", "model": "faces@v1", "error": "not an image", "error_type": "NotAnImageError"}
    assert len(result_to_csv_rows(ok)) == 2 and result_to_csv_rows(failed) == [{"image": "b.jpg", "model": "faces@v1", "error": "not an image"}]
    empty = DetectionResult("c.jpg", "faces@v1", Detections.empty((100, 80)))
    assert result_to_csv_rows(empty) == [{"image": "c.jpg", "model": "faces@v1", "width": 100, "height": 80}]  # still one row


def test_a_shadow_record_names_its_matches(tmp_path):
    old, new = dets([[0, 0, 10, 10], [50, 50, 60, 60]]), dets([[1, 1, 10, 10]])
    item = ImageInput(tmp_path / "x.jpg", "x.jpg", tmp_path)
    record = ShadowRecord(0, item, DetectionResult("x.jpg", "faces@v1", old), DetectionResult("x.jpg", "faces@v2", new), match(old, new))
    doc = shadow_record_to_dict(record)
    assert doc["old"]["count"] == 2 and doc["new"]["count"] == 1
    assert doc["comparison"]["matched"] == [{"old": 0, "new": 0, "iou": 0.81}] and doc["comparison"]["missing"] == [1]
    assert doc["comparison"]["agrees"] is False and doc["comparison"]["count_change"] == -1
