"""faces@v2: MTCNN from the ``mtcnn`` package (TensorFlow); its weights ship inside the package."""

from __future__ import annotations

import os

import numpy as np

from mldeploy.detections import Detections
from mldeploy.models.base import Detector, ModelSpec, shrink_to


class MTCNNDetector(Detector):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        # TensorFlow's C++ start-up chatter goes to stderr; keep it down unless the user asked for it.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from mldeploy.models.tfimport import import_tensorflow

        import_tensorflow()  # only when this model is really used; quiet, as the command line asks
        from mtcnn import MTCNN

        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device=spec.options.get("device", "CPU:0"))
        self._min_face_size = int(spec.options.get("min_face_size", 20))
        self._max_side = int(spec.options.get("max_side", 2048))  # bounds the image pyramid of a huge upload

    def _predict(self, image: np.ndarray, conf: float) -> Detections:
        height, width = image.shape[:2]
        small, scale = shrink_to(image, self._max_side)
        rgb = np.ascontiguousarray(small[..., ::-1])
        faces = self._mtcnn.detect_faces(rgb, box_format="xyxy", min_face_size=self._min_face_size)
        boxes = np.asarray([face["box"] for face in faces], dtype=np.float32).reshape(-1, 4) / scale
        scores = [face["confidence"] for face in faces]
        return Detections.from_boxes(boxes, scores, np.zeros(len(faces), np.int32), self.classes, (width, height))
