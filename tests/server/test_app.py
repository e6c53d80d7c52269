"""The app in-process (FastAPI's TestClient runs the lifespan): fast checks of routes, statuses and bodies.

The real-uvicorn tests beside this file stay the proof that the server works as a process; these cover
the adapters quickly.
"""

import pytest
from fastapi.testclient import TestClient

from mldeploy.server.app import create_app
from mldeploy.server.config import ServerConfig
from tests.helpers import png_claiming


@pytest.fixture
def client(project_dir):
    app = create_app(ServerConfig(models=["faces", "cats"], state_dir=project_dir / ".mldeploy", admin_token="t0ken"))
    with TestClient(app) as c:
        yield c


def upload(client, path, url="/count-faces/", name=None):
    return client.post(url, files={"file": (name or path.name, path.read_bytes())})


def test_count_and_predict_in_process(client, project_dir):
    photo = project_dir / "photos" / "astronaut.jpg"
    count = upload(client, photo).json()
    assert (count["model"], count["version"], count["count"], count["route"]) == ("faces", "faces@v1", 1, "live")
    picture = upload(client, photo, "/predict")
    assert picture.headers["content-type"] == "image/jpeg" and picture.headers["x-detections"] == "1"
    cat = upload(client, project_dir / "photos" / "chelsea.jpg", "/models/cats/predict?format=json").json()
    assert cat["version"] == "cats@haar" and cat["count"] == 1


def test_errors_are_one_shape_with_the_right_status(client, project_dir):
    unknown = upload(client, project_dir / "photos" / "astronaut.jpg", "/models/nope/predict")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "UnknownModelError"
    assert "not served here" in unknown.json()["error"]["message"]
    text = client.post("/count-faces/", files={"file": ("notes.jpg", b"hello, not an image")})
    assert text.status_code == 415 and text.json()["error"]["type"] == "NotAnImageError"
    bomb = client.post("/count-faces/", files={"file": ("bomb.png", png_claiming(100_000, 100_000))})
    assert bomb.status_code == 422 and "over the" in bomb.json()["error"]["message"]
    assert client.get("/models/nope/shadow").status_code == 404
    assert client.post("/admin/models/faces/rollback").status_code == 401


def test_info_endpoints(client):
    models = client.get("/models").json()
    assert models["default"] == "faces" and [m["name"] for m in models["models"]] == ["faces", "cats"]
    assert client.get("/readyz").json() == {"status": "ready", "models": {"faces": "faces@v1", "cats": "cats@haar"}}
    assert client.get("/models/faces/shadow").json() == {"model": "faces", "shadow": None, "pairs": []}
    assert "mldeploy_live_version" in client.get("/metrics").text


def test_blob_uploads_are_judged_by_content_and_both_count_paths_answer(client, project_dir):
    photo = (project_dir / "photos" / "astronaut.jpg").read_bytes()
    blob = client.post("/count-faces/", files={"file": ("blob", photo)})  # what browsers send for an in-memory file
    assert blob.status_code == 200 and blob.json()["count"] == 1
    assert client.post("/count-faces/", files={"file": ("notes.txt", photo)}).status_code == 415  # a non-image extension still is
    no_slash = client.post("/count-faces", files={"file": ("a.jpg", photo)}, follow_redirects=False)
    assert no_slash.status_code == 200 and no_slash.json()["count"] == 1  # curl does not follow a 307 for a POST


def test_the_page_asks_once_per_click_and_gets_the_picture_in_the_answer(client, project_dir):
    photo = (project_dir / "photos" / "astronaut.jpg").read_bytes()
    answer = client.post("/models/faces/predict?format=json&image=1", files={"file": ("a.jpg", photo)}).json()
    assert answer["count"] == 1 and answer["image"].startswith("data:image/jpeg;base64,")
    assert "image=1" in client.get("/").text


def test_the_openapi_schema_is_true(client):
    assert client.get("/docs").status_code == 404  # Swagger UI needs a CDN: off, rather than a blank page
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/models/{name}/predict"]["post"]["responses"]
    assert set(predict["200"]["content"]) == {"image/jpeg", "application/json"}
    assert predict["415"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert predict["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")  # not HTTPValidationError
    assert "HTTPValidationError" not in str(schema["paths"]["/count-faces/"])
    assert set(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}


def test_the_live_canary_guard_takes_gates_checked_by_the_gate_table():
    from mldeploy.errors import UsageError

    assert ServerConfig(canary_gates={"max_error_rate": 0.2, "max_p95_ms": None}).canary_bounds == {"max_error_rate": 0.2}
    with pytest.raises(UsageError, match="must be a share from 0 to 1"):
        ServerConfig(canary_gates={"max_error_rate": 2})
    with pytest.raises(UsageError, match="judges max_error_rate, max_p95_ms, not min_recall"):
        ServerConfig(canary_gates={"min_recall": 0.9})


def test_capture_settings_from_the_project_file_yield_to_flags(tmp_path):
    from mldeploy.project import Settings

    toml = tmp_path / "mldeploy.toml"
    toml.write_text('[capture]\ndir = "cap"\nrate = 0.5\nmax_mb = 8\n')
    settings = Settings.load(toml)
    from_file = ServerConfig.from_settings(settings)
    assert (from_file.capture_dir, from_file.capture_rate, from_file.capture_max_bytes) == (tmp_path.resolve() / "cap", 0.5, 8 * 1024 * 1024)
    flagged = ServerConfig.from_settings(settings, capture_rate=0.1, capture_max_mb=2)
    assert (flagged.capture_rate, flagged.capture_max_bytes, flagged.config_path) == (0.1, 2 * 1024 * 1024, toml)
