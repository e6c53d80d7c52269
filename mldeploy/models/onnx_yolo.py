"""YOLO exports in ONNX (the YOLOv5 and YOLOv8 output layouts), run with OpenCV's DNN module.

Why OpenCV and not onnxruntime: OpenCV is already here for every other backend and runs these exports
(convolutions, sigmoid, reshape, transpose, concat); one runtime keeps installs small and answers
consistent. A graph OpenCV cannot import is reported by ``mldeploy models validate`` as a load error.

Layouts, for ``C`` classes and ``N`` candidate boxes (``layout = "auto"`` tells them apart by shape):

* ``yolov5``: ``(1, N, 5 + C)``: cx, cy, w, h, objectness, per-class scores; score = objectness x class.
* ``yolov8``: ``(1, 4 + C, N)``: cx, cy, w, h, per-class scores (no objectness).

Coordinates are in input pixels (``input_size``, default 640); the image is resized to it (no
letterbox) and boxes are scaled back. Per-class NMS at ``nms`` (default 0.45).
"""

from __future__ import annotations

import cv2
import numpy as np

from mldeploy.detections import Detections
from mldeploy.errors import InferenceError, ModelUnavailableError
from mldeploy.models.base import Detector, ModelSpec


class OnnxYoloDetector(Detector):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._net = cv2.dnn.readNetFromONNX(str(spec.files["model"]))
        size = spec.options.get("input_size", 640)
        self._size = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
        self._nms = float(spec.options.get("nms", 0.45))
        self._layout = spec.options.get("layout", "auto")
        if self._layout not in ("auto", "yolov5", "yolov8"):
            raise ModelUnavailableError(f"{spec.ref}: layout must be auto, yolov5 or yolov8, not {self._layout!r}")
        if not self.classes:
            raise ModelUnavailableError(f"{spec.ref}: no class names (give names = \"file.names\" or classes = [...])")

    @property
    def min_input_side(self) -> int:
        return 2 * max(self._size)

    def _predict(self, image: np.ndarray, conf: float) -> Detections:
        height, width = image.shape[:2]
        blob = cv2.dnn.blobFromImage(image, 1 / 255.0, self._size, swapRB=True, crop=False)
        self._net.setInput(blob)
        self.mark("pre")
        out = self._net.forward()
        self.mark("forward")
        rows = self._rows(out)
        boxes, scores, class_ids = rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int32)
        keep = scores >= conf
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        sx, sy = width / self._size[0], height / self._size[1]
        xyxy = np.stack([(boxes[:, 0] - boxes[:, 2] / 2) * sx, (boxes[:, 1] - boxes[:, 3] / 2) * sy,
                         (boxes[:, 0] + boxes[:, 2] / 2) * sx, (boxes[:, 1] + boxes[:, 3] / 2) * sy], axis=1) if len(boxes) else np.zeros((0, 4))
        chosen = []
        for cid in np.unique(class_ids):
            idx = np.flatnonzero(class_ids == cid)
            xywh = np.column_stack([xyxy[idx, :2], xyxy[idx, 2:] - xyxy[idx, :2]]).tolist()
            picked = cv2.dnn.NMSBoxes(xywh, scores[idx].tolist(), conf, self._nms)
            chosen.extend(idx[np.asarray(picked, dtype=np.int64).reshape(-1)])
        chosen = np.asarray(sorted(chosen), dtype=np.int64)
        return Detections.from_boxes(xyxy[chosen], scores[chosen], class_ids[chosen], self.classes, (width, height))

    def _rows(self, out: np.ndarray) -> np.ndarray:
        """``(n, 6)``: cx, cy, w, h, score, class id, whatever the layout."""
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 3:
            out = out[0]
        if out.ndim != 2:
            raise InferenceError(f"{self.spec.ref}: expected a (1, N, 5+C) or (1, 4+C, N) output, got shape {out.shape}")
        n_classes = len(self.classes)
        layout = self._layout
        if layout == "auto":
            if out.shape[1] == 5 + n_classes and out.shape[0] != 5 + n_classes:
                layout = "yolov5"
            elif out.shape[0] == 4 + n_classes:
                layout = "yolov8"
            elif out.shape[1] == 4 + n_classes:
                layout = "yolov8-transposed"
            else:
                raise InferenceError(f"{self.spec.ref}: output shape {out.shape} fits neither YOLOv5 (N, {5 + n_classes}) "
                                     f"nor YOLOv8 ({4 + n_classes}, N) for {n_classes} classes; check the names file")
        if layout == "yolov5":
            class_scores = out[:, 5:]
            ids = class_scores.argmax(axis=1) if n_classes else np.zeros(len(out), np.int64)
            scores = out[:, 4] * class_scores[np.arange(len(out)), ids]
            return np.column_stack([out[:, :4], scores, ids])
        if layout == "yolov8":
            out = out.T
        class_scores = out[:, 4:]
        ids = class_scores.argmax(axis=1)
        return np.column_stack([out[:, :4], class_scores[np.arange(len(out)), ids], ids])
