"""Drawing detections onto images."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from mldeploy.detections import Detections

if TYPE_CHECKING:
    from mldeploy.compare import ImageComparison

# A small palette of distinct BGR colours; a label always gets the same one.
_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72), (23, 204, 146),
            (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100),
            (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255)]


def label_colour(label: str) -> tuple[int, int, int]:
    return _PALETTE[zlib.crc32(label.encode("utf-8")) % len(_PALETTE)]


def text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on a light label background, white on a dark one (relative luminance, BGR order)."""
    b, g, r = background
    return (0, 0, 0) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 else (255, 255, 255)


def line_thickness(width: int, height: int) -> int:
    """Box lines that stay visible at any size: 2 px up to about 720 px, then growing with the image
    (supervision's annotators do the same)."""
    return max(2, round(min(width, height) / 360))


class BoxAnnotator:
    """Draws each box with its label and confidence. Settings in ``__init__``, work in :meth:`annotate`."""

    def __init__(self, thickness: int | None = None, show_confidence: bool = True) -> None:
        self.thickness = thickness
        self.show_confidence = show_confidence

    def annotate(self, image: np.ndarray, detections: Detections, colours: Sequence[tuple[int, int, int]] | None = None) -> np.ndarray:
        """Return a copy of ``image`` (BGR) with the detections drawn on it (in ``colours`` when given,
        one per box; by label otherwise)."""
        scene = image.copy()
        height, width = scene.shape[:2]
        # Scale line and text with the image so boxes stay visible on large photos.
        thickness = self.thickness or line_thickness(width, height)
        font_scale = max(0.45, min(height, width) / 900)
        text_thickness = max(1, thickness // 2)
        if colours is None:
            colours = [label_colour(str(label)) for label in detections.label]
        boxes = list(zip(detections.xyxy.astype(int), detections.confidence, detections.label, colours))
        for (x1, y1, x2, y2), _, _, colour in boxes:  # a dark edge on both sides: boxes of one label that overlap stay apart
            cv2.rectangle(scene, (x1, y1), (x2, y2), (32, 32, 32), thickness + 2)
            cv2.rectangle(scene, (x1, y1), (x2, y2), colour, thickness)
        for (x1, y1, x2, y2), conf, label, colour in boxes:  # labels over every box, so no box hides another's label
            text = f"{label} {conf:.2f}" if self.show_confidence else str(label)
            (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_thickness)
            ty = y1 - thickness - 2 if y1 - th - baseline - thickness - 2 >= 0 else y1 + th + thickness + 2
            cv2.rectangle(scene, (x1, ty - th - baseline), (x1 + tw + 6, ty + baseline), colour, cv2.FILLED)
            cv2.putText(scene, text, (x1 + 3, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_colour(colour), text_thickness, cv2.LINE_AA)
        return scene


#: Colours (BGR) of the comparison view: what both found, what only one found, what changed label, what moved.
MATCHED, MISSING, EXTRA, RELABELLED, DRIFTED = (60, 160, 40), (40, 40, 220), (220, 120, 20), (0, 150, 255), (200, 40, 200)


def dashed_rectangle(image: np.ndarray, box, colour, thickness: int = 1, dash: int = 8) -> None:
    """An outline in dashes, in place: a box that is *not* there (missed, or where a drifted box was)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, length, 2 * dash):
            end = min(start + dash, length)
            p = (ax + (bx - ax) * start // max(length, 1), ay + (by - ay) * start // max(length, 1))
            q = (ax + (bx - ax) * end // max(length, 1), ay + (by - ay) * end // max(length, 1))
            cv2.line(image, p, q, colour, thickness, cv2.LINE_AA)


class ComparisonAnnotator:
    """Old and new version side by side on one image: matched boxes green, boxes only the old version
    found red, boxes only the new one found blue, relabelled boxes orange, drifted pairs magenta. The new
    side also draws, dashed, the old boxes it missed and where each drifted box used to be."""

    def __init__(self, max_side: int = 640) -> None:
        self.max_side = max_side
        self._boxes = BoxAnnotator()

    def annotate(self, image: np.ndarray, comparison: "ImageComparison", titles: tuple[str, str] = ("old", "new")) -> np.ndarray:
        scale = min(1.0, self.max_side / max(image.shape[:2]))
        if scale < 1.0:
            image = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        old_colours = [MISSING] * len(comparison.old)
        new_colours = [EXTRA] * len(comparison.new)
        for pairs, colour in ((comparison.matched, MATCHED), (comparison.relabelled, RELABELLED), (comparison.drifted, DRIFTED)):
            for i, j, _ in pairs:
                old_colours[i], new_colours[j] = colour, colour
        sides = []
        for detections, colours, title in ((comparison.old, old_colours, titles[0]), (comparison.new, new_colours, titles[1])):
            width, height = image.shape[1], image.shape[0]
            xyxy = np.minimum(detections.xyxy * scale, np.array([width, height, width, height], np.float32))
            scaled = Detections(xyxy, detections.confidence, detections.class_id, detections.label, (width, height))
            drawn = self._boxes.annotate(image, scaled, colours)
            if detections is comparison.new:  # where the old boxes were: missed, or moved from
                ghosts = [(i, MISSING) for i in comparison.missing] + [(i, DRIFTED) for i, _, _ in comparison.drifted]
                for i, colour in ghosts:
                    dashed_rectangle(drawn, comparison.old.xyxy[i] * scale, colour, max(1, round(max(width, height) / 400)))
            banner = np.full((28, drawn.shape[1], 3), 255, np.uint8)
            cv2.putText(banner, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
            sides.append(np.vstack([banner, drawn]))
        gap = np.full((sides[0].shape[0], 8, 3), 255, np.uint8)
        return np.hstack([sides[0], gap, sides[1]])


def encode_image(image: np.ndarray, extension: str = ".jpg", quality: int = 90) -> bytes:
    """Encode a BGR image; ``extension`` picks the format (``.jpg``, ``.png``, ``.webp``, ``.bmp``, ``.tif``)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if extension.lower() in (".jpg", ".jpeg") else []
    ok, buffer = cv2.imencode(extension, image, params)
    if not ok:
        raise ValueError(f"OpenCV cannot encode {extension} images")
    return buffer.tobytes()
