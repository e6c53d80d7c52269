"""OpenCV Haar cascades (faces-haar@default, faces-haar@alt2, cats@haar).

A cascade gives no calibrated score, so every box it returns has confidence 1.0: ``--conf`` does not
filter it. Its sensitivity is set by ``scale_factor`` / ``min_neighbors`` in the spec.
"""

from __future__ import annotations

import cv2
import numpy as np

from mldeploy.detections import Detections, xywh_to_xyxy
from mldeploy.errors import ModelUnavailableError
from mldeploy.models.base import Detector, ModelSpec, shrink_to


class HaarDetector(Detector):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._cascade = cv2.CascadeClassifier(str(spec.files["cascade"]))
        if self._cascade.empty():
            raise ModelUnavailableError(f"{spec.ref}: {spec.files['cascade']} is not a valid Haar cascade")
        self._scale_factor = float(spec.options.get("scale_factor", 1.1))
        self._min_neighbors = int(spec.options.get("min_neighbors", 5))
        self._min_size = int(spec.options.get("min_size", 30))
        # A 9999x9999 upload took +5 GB and 69 s at full size; 1280 px bounds both and leaves every
        # photo of the sample set untouched.
        self._max_side = int(spec.options.get("max_side", 1280))

    @property
    def min_input_side(self) -> int:
        return 2 * self._max_side

    def _predict(self, image: np.ndarray, conf: float) -> Detections:
        height, width = image.shape[:2]
        small, scale = shrink_to(image, self._max_side)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        rects = self._cascade.detectMultiScale(
            gray, scaleFactor=self._scale_factor, minNeighbors=self._min_neighbors, minSize=(self._min_size, self._min_size)
        )
        boxes = xywh_to_xyxy(rects) / scale
        return Detections.from_boxes(boxes, np.ones(len(boxes)), np.zeros(len(boxes), np.int32), self.classes, (width, height))
