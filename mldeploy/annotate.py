"""Drawing detections onto images."""

from __future__ import annotations

import zlib

import cv2
import numpy as np

from mldeploy.detections import Detections

# A small palette of distinct BGR colours; a label always gets the same one.
_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72), (23, 204, 146),
            (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100),
            (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255)]


def label_colour(label: str) -> tuple[int, int, int]:
    return _PALETTE[zlib.crc32(label.encode("utf-8")) % len(_PALETTE)]


class BoxAnnotator:
    """Draws each box with its label and confidence. Settings in ``__init__``, work in :meth:`annotate`."""

    def __init__(self, thickness: int | None = None, show_confidence: bool = True) -> None:
        self.thickness = thickness
        self.show_confidence = show_confidence

    def annotate(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        """Return a copy of ``image`` (BGR) with the detections drawn on it."""
        scene = image.copy()
        height, width = scene.shape[:2]
        # Scale line and text with the image so boxes stay visible on large photos.
        thickness = self.thickness or max(1, round(max(height, width) / 400))
        font_scale = max(0.4, max(height, width) / 1200)
        for (x1, y1, x2, y2), conf, label in zip(detections.xyxy.astype(int), detections.confidence, detections.label):
            colour = label_colour(label)
            cv2.rectangle(scene, (x1, y1), (x2, y2), colour, thickness)
            text = f"{label} {conf:.2f}" if self.show_confidence else str(label)
            (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness - 1))
            ty = y1 - 4 if y1 - th - baseline - 4 >= 0 else y1 + th + 4
            cv2.rectangle(scene, (x1, ty - th - baseline), (x1 + tw + 4, ty + baseline), colour, cv2.FILLED)
            cv2.putText(scene, text, (x1 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), max(1, thickness - 1), cv2.LINE_AA)
        return scene


def encode_image(image: np.ndarray, extension: str = ".jpg", quality: int = 90) -> bytes:
    """Encode a BGR image; ``extension`` picks the format (``.jpg``, ``.png``, ``.webp``, ``.bmp``, ``.tif``)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if extension.lower() in (".jpg", ".jpeg") else []
    ok, buffer = cv2.imencode(extension, image, params)
    if not ok:
        raise ValueError(f"OpenCV cannot encode {extension} images")
    return buffer.tobytes()
