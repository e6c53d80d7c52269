"""The HTTP service, as a real uvicorn process: uploads, statuses, and answers under load."""

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import CHROMIUM_FLAGS, PHOTOS, chromium, png_claiming, subprocess_env


def test_predict_count_and_info_endpoints(serve, project_dir):
    server = serve("--model", "faces", "--model", "people")
    photo = project_dir / "photos" / "astronaut.jpg"
    image = server.post("/predict", photo)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.headers["x-model-version"] == "faces@v1" and image.headers["x-detections"] == "1"
    assert image.content[:2] == b"\xff\xd8" and len(image.content) > 10000
    as_json = server.post("/predict?format=json", photo).json()
    assert as_json["version"] == "faces@v1" and as_json["count"] == 1 and len(as_json["detections"][0]["box"]) == 4
    by_accept = server.post("/models/faces/predict", photo, headers={"Accept": "application/json"})
    assert by_accept.json()["detections"] == as_json["detections"]
    count = server.post("/count-faces/", photo).json()
    assert (count["model"], count["version"], count["count"]) == ("faces", "faces@v1", 1)
    people = server.post("/count-people/", project_dir / "photos" / "chelsea.jpg")
    assert people.status_code == 200 and people.headers["x-model-version"] == "people@hog" and people.json()["count"] == 0
    models = server.client.get("/models").json()
    assert models["default"] == "faces" and [m["name"] for m in models["models"]] == ["faces", "people"]
    assert models["models"][0]["live"] == "faces@v1" and "/count-faces/" in models["models"][0]["endpoints"]
    assert server.client.get("/healthz").json() == {"status": "ok"}
    assert server.client.get("/readyz").json()["models"] == {"faces": "faces@v1", "people": "people@hog"}
    metrics = server.client.get("/metrics").text
    assert 'mldeploy_requests_total{model="faces",route="live",status="200",version="v1"} 4.0' in metrics
    assert "mldeploy_request_seconds_bucket" in metrics and "mldeploy_capture_failed_total" not in metrics.split("# TYPE")[0]


@pytest.mark.parametrize(
    "name, content, status, kind",
    [
        ("notes.jpg", b"a text file named like a photo", 415, "NotAnImageError"),
        ("photo.txt", None, 415, "UnsupportedUploadError"),
        ("empty.jpg", b"", 422, "InvalidImageError"),
        ("cut.jpg", "truncated", 422, "InvalidImageError"),
        ("bomb.png", png_claiming(100000, 100000), 422, "ImageTooLargeError"),
        ("../../etc/evil.jpg", b"GIF89a not really", 415, None),
    ],
)
def test_bad_uploads_get_a_status_and_a_json_error(serve, project_dir, name, content, status, kind):
    server = serve("--model", "faces")
    real = (project_dir / "photos" / "chelsea.jpg").read_bytes()
    data = real if content is None else real[:3000] if content == "truncated" else content
    response = server.client.post("/predict", files={"file": (name, data)})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and (kind is None or error["type"] == kind)
    assert not list(project_dir.rglob("evil.jpg")) and not (project_dir.parent / "etc").exists()  # never written under its name
    assert server.client.get("/readyz").status_code == 200


def test_missing_field_unknown_model_and_size_limit(serve, project_dir):
    server = serve("--model", "faces", "--max-upload-mb", "1")
    assert server.client.post("/predict").status_code == 422
    assert server.client.post("/predict", data={"other": "x"}).json()["error"]["type"] == "RequestValidationError"
    assert server.post("/models/nope/predict", project_dir / "photos" / "chelsea.jpg").status_code == 404
    big = server.client.post("/predict", files={"file": ("big.jpg", b"\xff" * (2 * 1024 * 1024))})
    assert big.status_code == 413 and big.json()["error"]["type"] == "UploadTooLargeError"

    def chunks():  # no Content-Length: the limit is enforced while the body arrives
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n\r\n"
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    streamed = server.client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413
    assert server.client.get("/readyz").status_code == 200


def test_answers_under_load_are_the_answers_given_one_at_a_time(serve, project_dir):
    """Several hundred mixed requests from 16 threads: no 5xx, and every answer equals the sequential one."""
    server = serve("--model", "faces", "--model", "people", "--model", "faces-haar")
    photos = [project_dir / "photos" / name for name in PHOTOS]
    endpoints = ["/count-faces/", "/count-people/", "/count-faces-haar/"]
    expected = {(e, p.name): server.post(e, p).json()["detections"] for e in endpoints for p in photos}
    assert sum(len(v) for v in expected.values()) >= 4  # real boxes to compare, not empty answers
    jobs = [(endpoints[n % 3], photos[n % 5]) for n in range(300)]

    def one(job):
        endpoint, photo = job
        response = server.post(endpoint, photo)
        return endpoint, photo.name, response.status_code, response.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, jobs))
    assert [status for *_, status, _ in answers] == [200] * 300
    wrong = [(e, p) for e, p, _, body in answers if body["detections"] != expected[(e, p)]]
    assert wrong == []
    assert server.client.get("/readyz").status_code == 200


def test_the_page_works_offline(serve):
    server = serve("--model", "faces")
    page = server.client.get("/")
    assert page.status_code == 200 and "<form" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: every asset is inline


@pytest.mark.skipif(chromium() is None, reason="no Chromium installed (apt-get install chromium)")
def test_the_page_in_a_headless_browser(serve, project_dir, tmp_path):
    """A person's path: open the page, pick an image, press Detect, see the counts and the boxes."""
    sync_api = pytest.importorskip("playwright.sync_api")
    server = serve("--model", "faces", "--model", "people")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page()
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelectorAll('#model option').length == 2")
        assert page.locator("#model").input_value() == "faces"
        page.set_input_files("#file", str(project_dir / "photos" / "astronaut.jpg"))
        page.click("#go")
        page.wait_for_selector("#result img")
        page.wait_for_function("document.querySelector('#result img').naturalWidth > 0")
        assert page.locator("#status").inner_text() == "1 found by faces@v1 (live)"
        assert page.locator("#result table").inner_text().split() == ["label", "count", "face", "1"]
        page.set_input_files("#file", str(_text_named_jpg(tmp_path)))
        page.click("#go")
        page.wait_for_selector("#status .error")
        assert page.locator("#status .error").inner_text().startswith("415: not an image")
        page.screenshot(path=str(tmp_path / "page.png"))
        browser.close()
    assert all(url.startswith(server.url) or url.startswith(("blob:", "data:")) for url in requests)  # nothing fetched from elsewhere
    assert sum("/predict" in url for url in requests) == 2  # two clicks, two inferences: never a second request for the picture


def _text_named_jpg(folder):
    path = folder / "notes.jpg"
    path.write_text("not a photo")
    return path


def test_your_own_models_served_and_shadowed(serve, byo_project):
    """An ONNX export answers; its Darknet twin shadows it and agrees on every box."""
    import time

    server = serve("--model", "red", "--shadow", "red=darknet")
    for name in ("square0.png", "square3.png", "square6.png"):
        answer = server.post("/count-red/", byo_project / "shapes" / name)
        assert answer.status_code == 200 and answer.json()["version"] == "red@v5" and answer.json()["count"] > 0
    deadline = time.monotonic() + 20
    pairs = []
    while time.monotonic() < deadline and not (pairs and pairs[0]["compared"] == 3):
        pairs = server.client.get("/models/red/shadow").json()["pairs"]
        time.sleep(0.1)
    assert pairs[0]["compared"] == 3 and pairs[0]["disagreeing"] == 0 and pairs[0]["mean_iou"] > 0.99


def test_server_logs_name_routing_changes_and_can_be_json_lines(serve, project_dir):
    server = serve("--model", "faces", "--log-level", "info", "--log-format", "json")
    server.client.get("/readyz")
    subprocess.run([sys.executable, "-m", "mldeploy", "route", "faces", "--shadow", "blind"], cwd=project_dir,
                   env=subprocess_env(), check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "faces@blind" not in server.output():
        time.sleep(0.2)
    lines = [json.loads(line) for line in server.output().splitlines()]  # every line, from the first, is JSON
    assert lines[0]["message"].startswith(f"starting on {server.url}: faces") and lines[0]["url"] == server.url
    routing = [entry for entry in lines if entry["logger"].startswith("mldeploy") and "routing" in entry["message"]]
    assert routing and "faces@blind" in routing[-1]["message"] and routing[-1]["level"] == "info"
    assert any(entry["logger"].startswith("uvicorn") for entry in lines)  # uvicorn's own lines, in the same format
    serving = next(entry for entry in lines if entry["message"].startswith("serving "))
    assert serving["message"] == "serving faces: live faces@v1" and serving["routes"]["faces"]["live"] == "faces@v1"  # fields, not a repr
    assert not any("{'" in entry["message"] for entry in lines)
    server.post("/predict", project_dir / "photos" / "camera.jpg")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and '"/predict"' not in server.output():
        time.sleep(0.1)
    access = next(json.loads(line) for line in server.output().splitlines() if '"uvicorn.access"' in line and '"/predict"' in line)
    assert (access["method"], access["path"], access["status"]) == ("POST", "/predict", 200)
