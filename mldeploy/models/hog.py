"""people@hog: OpenCV's built-in HOG + linear SVM pedestrian detector (Dalal & Triggs).

It was trained on 64x128 windows of whole, upright people with a margin around them; it misses people
who fill the frame or are cut off. Settings are the classic ones (shrink to 400 px, window stride 4,
scale step 1.05): on the sample photos they give no false positive, where stride 8 at 640 px found a
"person" in the rocket launch photo.
The SVM margin ``w`` is mapped to a score with the logistic function, so the default threshold 0.5
keeps exactly the windows the SVM accepts (``w > 0``).
"""

from __future__ import annotations

import cv2
import numpy as np

from mldeploy.detections import Detections, xywh_to_xyxy
from mldeploy.models.base import Detector, ModelSpec, shrink_to


class HOGPeopleDetector(Detector):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self._max_side = int(spec.options.get("max_side", 400))
        self._stride = int(spec.options.get("win_stride", 4))
        self._nms = float(spec.options.get("nms", 0.45))

    @property
    def min_input_side(self) -> int:
        return 2 * self._max_side

    def _predict(self, image: np.ndarray, conf: float) -> Detections:
        height, width = image.shape[:2]
        small, scale = shrink_to(image, self._max_side)
        window_w, window_h = self._hog.winSize
        if small.shape[1] < window_w or small.shape[0] < window_h:
            # Smaller than one detection window: OpenCV aborts the whole process (a C++ assertion,
            # measured on a 1x1 image) instead of raising, so answer "nobody" here.
            return Detections.empty((width, height))
        rects, weights = self._hog.detectMultiScale(small, winStride=(self._stride, self._stride), padding=(8, 8), scale=1.05)
        rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, dtype=np.float64).reshape(-1)))
        if len(rects):
            keep = np.asarray(cv2.dnn.NMSBoxes(rects.tolist(), scores.tolist(), conf, self._nms), dtype=np.int64).reshape(-1)
            rects, scores = rects[keep], scores[keep]
        boxes = xywh_to_xyxy(rects) / scale
        return Detections.from_boxes(boxes, scores, np.zeros(len(boxes), np.int32), self.classes, (width, height))
