"""A two-class detector of coloured squares (red, blue) on grey, and a capture built with it: the planted
world of the close-the-loop tests, where every answer and every truth is known.

``ColourSquares`` is a real detector (connected components of a colour mask, OpenCV), declared in the
test project's mldeploy.toml through the seam a user has for a Detector of their own. A square is red
(or blue) where that channel is well above the other two, whatever the light; its confidence is the
channel's mean brightness, so darker traffic gives lower confidences and the same boxes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mldeploy.detections import Detections
from mldeploy.models.base import Detector

COLOURS = {"red": 2, "blue": 0}  # BGR channel of each class

COLOURS_TOML = """
[models.colours.v1]               # red and blue squares (tests/helpers/colours.py)
backend = "darknet"
cfg = "nets/v1.cfg"
weights = "nets/v1.weights"
names = "nets/colours.names"
detector = "tests.helpers.colours:ColourSquares"
conf = 0.05

[models.colours.v2]               # planted regression on one class only: blue is never reported
from = "colours@v1"
keep = ["red"]

[models.colours.twin]             # the same detector under another name
from = "colours@v1"
"""


class ColourSquares(Detector):
    def _predict(self, image, conf):
        import cv2

        img = image.astype(np.int16)
        boxes, scores, classes, labels = [], [], [], []
        for class_id, label in enumerate(self.classes):
            c = COLOURS[label]
            others = np.delete(img, c, axis=2).max(axis=2)
            mask = ((img[:, :, c] > 2 * others + 20)).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
            for i in range(1, n):
                x, y, w, h, area = stats[i]
                if area < 30:
                    continue
                region = img[y:y + h, x:x + w, c]
                boxes.append([x, y, x + w, y + h])
                scores.append(float(region.mean()) / 255)
                classes.append(class_id)
                labels.append(label)
        return Detections(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), scores, classes, labels, (image.shape[1], image.shape[0]))


def declare(project_dir: Path) -> None:
    """Add the colours model to the test project."""
    (project_dir / "nets" / "colours.names").write_text("red\nblue\n")
    with open(project_dir / "mldeploy.toml", "a") as fh:
        fh.write(COLOURS_TOML)


@dataclass
class Scene:
    """One planted image: its PNG bytes and its true boxes."""

    png: bytes
    boxes: list[tuple[str, list[float]]]  # (label, [x1, y1, x2, y2])
    request_id: str


def scene(rng: np.random.Generator, n: int, light: float = 1.0, width: int = 320, height: int = 240) -> Scene:
    """Up to three red and three blue squares that do not touch, on a grey background, at ``light``."""
    import cv2

    image = np.full((height, width, 3), 128, dtype=np.float64)
    image += rng.normal(0, 4, image.shape)
    taken: list[list[int]] = []
    boxes = []
    for label in ("red", "blue"):
        for _ in range(int(rng.integers(0, 4))):
            for _try in range(20):
                side = int(rng.integers(20, 60))
                x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
                box = [x, y, x + side, y + side]
                if all(box[2] + 4 < t[0] or t[2] + 4 < box[0] or box[3] + 4 < t[1] or t[3] + 4 < box[1] for t in taken):
                    taken.append(box)
                    colour = [40, 40, 40]
                    colour[COLOURS[label]] = 230
                    image[y:y + side, x:x + side] = colour
                    boxes.append((label, [float(v) for v in box]))
                    break
    image = np.clip(image * light, 0, 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", image)
    assert ok
    return Scene(png.tobytes(), boxes, f"req-{n:05d}")


def coco(scenes: list[Scene], name=lambda s: f"{s.request_id}.png") -> dict:
    """COCO labels of ``scenes``, each image named by ``name(scene)`` (a request id, a digest...)."""
    categories = [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}]
    images, annotations = [], []
    for i, s in enumerate(scenes, 1):
        images.append({"id": i, "file_name": name(s), "width": 320, "height": 240})
        for label, (x1, y1, x2, y2) in s.boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1 if label == "red" else 2,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(path: Path, scenes: list[Scene], **kwargs) -> Path:
    path.write_text(json.dumps(coco(scenes, **kwargs)))
    return path


def fill_capture(project_dir: Path, folder: Path, scenes: list[Scene], version: str = "v1", start: str = "2026-11-01T00:00:00+00:00",
                 step_s: float = 600.0, route: str = "live") -> None:
    """Capture ``scenes`` as a server would: the real ``colours@version`` answers each, and the request
    is kept with its id, at ``start`` plus ``step_s`` a request (the clock of a capture made elsewhere)."""
    from datetime import datetime, timedelta

    from mldeploy.capture import CaptureStore
    from mldeploy.images import decode_image
    from mldeploy.project import Project

    project = Project(cwd=project_dir)
    detector = project.load(project.registry().resolve(f"colours@{version}"))
    at = datetime.fromisoformat(start)
    store = CaptureStore(folder, 1 << 34)
    try:
        for n, s in enumerate(scenes):
            answer, seconds = detector.timed_detect(decode_image(s.png))
            when = (at + timedelta(seconds=n * step_s)).isoformat(timespec="microseconds")
            store.add(s.png, "colours", version, route, answer, seconds, request_id=s.request_id, captured_at=when)
    finally:
        store.close()
