"""Planted regressions, built the way real ones happen: a threshold change, a prototxt edit, a network
padded with layers that change nothing but the time, a version slow only on large images, one that
raises on some images (:mod:`tests.helpers.flaky`). Each must fail the default policy; twins never."""

from __future__ import annotations

from pathlib import Path

from mldeploy.models.darknet import DarknetDetector
from mldeploy.models.ssd import CaffeSSDDetector
from tests.helpers import SAMPLES
from tests.helpers.tiny_darknet import write_tiny_yolo

LARGE_PIXELS = 2_000_000


class Hungry(DarknetDetector):
    """shapes@v1's network and answers, holding 300 MB it allocated (and touched) when it loaded: the
    memory a large model would take, for ``mldeploy bench --max-memory-mb``."""

    HOLD_MB = 300

    def __init__(self, spec):
        super().__init__(spec)
        import numpy as np

        self._held = np.ones(self.HOLD_MB * 1024 * 1024 // 8, dtype=np.float64)  # ones, not zeros: every page is written


class SlowOnLargeImages(CaffeSSDDetector):
    """faces@v1's network and answers, but on an image over 2 MP it runs the network 9 times (real work)."""

    def _predict(self, image, conf):
        if image.shape[0] * image.shape[1] > LARGE_PIXELS:
            for _ in range(8):
                super()._predict(image, conf)
        return super()._predict(image, conf)


def drifted_prototxt(source: Path, target: Path, factor: float = 2.5) -> Path:
    """The SSD's prototxt with its box-size variances scaled: the same faces, boxes of other sizes."""
    lines, seen = [], 0
    for line in source.read_text().splitlines():
        if line.strip().startswith("variance:"):
            seen += 1
            if (seen - 1) % 4 >= 2:  # the width and height variances of each PriorBox layer
                key, value = line.split(":")
                line = f"{key}: {float(value) * factor}"
        lines.append(line)
    target.write_text("\n".join(lines) + "\n")
    return target


PLANTED_TOML = """
[models.faces.twin]             # the same network under another name: must never fail
from = "faces@v1"

[models.faces.strict]           # threshold up: misses faces
from = "faces@v1"
conf = 0.9

[models.faces.loose]            # threshold down: invents faces
from = "faces@v1"
conf = 0.2

[models.faces.drift]            # a prototxt edit: the same faces, boxes re-decoded to other sizes
from = "faces@v1"
prototxt = "nets/drift.prototxt"

[models.faces.slow-large]       # identical answers, 9x the work on images over 2 MP
from = "faces@v1"
detector = "tests.helpers.planted:SlowOnLargeImages"

[models.shapes.twin]
from = "shapes@v1"

[models.shapes.hungry]          # identical answers, 300 MB more memory once loaded
from = "shapes@v1"
detector = "tests.helpers.planted:Hungry"

[models.shapes.padded]          # identical answers, 60 zero-weight residual blocks
backend = "darknet"
cfg = "nets/padded.cfg"
weights = "nets/padded.weights"
names = "nets/v1.names"
"""


def plant(project: Path) -> None:
    """Add the planted versions to a test project (tests/conftest.py's project_dir) and a face set in faces/."""
    from PIL import Image

    from mldeploy.models.registry import builtin_specs

    ssd = next(s for s in builtin_specs() if s.ref == "faces@v1")
    drifted_prototxt(Path(ssd.files["prototxt"]), project / "nets" / "drift.prototxt")
    write_tiny_yolo(project / "nets", "padded", 1, padding=60, width=128)  # about 16 ms a call against 0.6 ms
    with open(project / "mldeploy.toml", "a") as fh:
        fh.write(PLANTED_TOML)
    faces = project / "faces"
    faces.mkdir()
    for photo in sorted(SAMPLES.glob("*.jpg")):
        with Image.open(photo) as img:
            img = img.convert("RGB")
            for side in (320, 480, 640):
                scale = side / max(img.size)
                img.resize((round(img.width * scale), round(img.height * scale))).save(faces / f"{photo.stem}-{side}.jpg", quality=92)
            if photo.stem in ("astronaut", "camera"):  # two over 2 MP: 1 in 9 images
                img.resize((1600, 1600)).save(faces / f"{photo.stem}-1600.jpg", quality=92)
