"""Hardening of `mldeploy serve` (issue 11): memory, time and connections bounded; the shadow child dies
with its parent; state trouble is reported once and never silently changes the live version."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mldeploy.server.app import create_app
from mldeploy.server.config import ServerConfig
from tests.helpers import png_claiming, subprocess_env, wait_until


@pytest.fixture
def app_client(project_dir):
    def make(**settings):
        config = ServerConfig(models=["faces", "cats"], state_dir=project_dir / ".mldeploy", admin_token="t0ken", **settings)
        return TestClient(create_app(config))

    return make


def test_error_metrics_are_labelled_by_route_not_by_path(app_client, project_dir):
    photo = (project_dir / "photos" / "camera.jpg").read_bytes()
    with app_client() as client:
        for n in range(30):
            assert client.post(f"/models/nope{n}/predict", files={"file": ("a.jpg", photo)}).status_code == 404
            assert client.post(f"/admin/models/x{n}/promote", json={"version": "v2"}).status_code == 401
            assert client.get(f"/no/such/path/{n}").status_code == 404
        series = [line for line in client.get("/metrics").text.splitlines() if line.startswith("mldeploy_request_errors_total{")]
    endpoints = {line.split('endpoint="')[1].split('"')[0] for line in series}
    assert endpoints == {"/models/{name}/predict", "/admin", "unmatched"} and len(series) == 3


def test_the_admin_token_is_checked_before_the_body(app_client):
    with app_client() as client:
        malformed = client.post("/admin/models/faces/promote", content=b"{not json", headers={"content-type": "application/json"})
        assert malformed.status_code == 401 and malformed.json()["error"]["type"] == "AdminAuthError"
        with_token = client.post("/admin/models/faces/promote", content=b"{not json",
                                 headers={"content-type": "application/json", "authorization": "Bearer t0ken"})
        assert with_token.status_code == 422


def test_a_huge_image_is_refused_before_decoding_and_a_slow_model_answers_503(app_client, project_dir):
    with app_client() as client:
        bomb = client.post("/count-cats/", files={"file": ("big.png", png_claiming(9999, 9999))})
        assert bomb.status_code == 422 and "over the 25 MP limit" in bomb.json()["error"]["message"]
    with app_client(request_timeout=0.001) as client:  # no model answers in a millisecond
        slow = client.post("/count-faces/", files={"file": ("a.jpg", (project_dir / "photos" / "astronaut.jpg").read_bytes())})
        assert slow.status_code == 503 and "did not answer within 0.001 s" in slow.json()["error"]["message"]


def test_the_haar_models_search_a_bounded_size_and_map_boxes_back(project_dir):
    """A 9999x9999 upload took +5 GB and 69 s on cats@haar: the cascades now search at most 1280 px."""
    import cv2

    from mldeploy.models import load_detector
    from mldeploy.models.base import shrink_to
    from mldeploy.project import Project

    haar = load_detector(Project().registry().resolve("faces-haar@default"))
    photo = cv2.imread(str(project_dir / "photos" / "astronaut.jpg"))
    big = cv2.resize(photo, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # 2048 px
    found = haar.detect(big)
    searched, scale = shrink_to(big, 1280)
    assert searched.shape[:2] == (1280, 1280) and found.image_size == (2048, 2048)
    assert np.allclose(found.xyxy, haar.detect(searched).xyxy / scale)  # the boxes of the 1280 px search, in the upload's pixels
    face = haar.detect(photo).xyxy[0]
    assert np.abs(found.xyxy / 4 - face).sum(axis=1).min() < 0.05 * (face[2] - face[0]) * 4  # the astronaut's face, where it is


def test_clients_that_never_finish_headers_or_body_are_cut_off(serve):
    server = serve("--model", "faces", "--header-timeout", "1", "--body-timeout", "1")
    port = server.port
    stalled = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /count-faces/ HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        stalled.append(s)
    deadline = time.monotonic() + 10
    closed = 0
    for s in stalled:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            closed += s.recv(100) == b""
        except OSError:
            closed += 1
        s.close()
    assert closed == 20
    body = socket.create_connection(("127.0.0.1", port))
    body.sendall(b"POST /count-faces/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000\r\n\r\n--b\r\n")
    body.settimeout(10)
    answer = b""
    while chunk := body.recv(1000):  # the server closes the connection after its answer
        answer += chunk
    body.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    assert server.client.get("/readyz").status_code == 200  # the server is fine


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_kill_9_of_the_server_takes_the_shadow_process_with_it(serve, project_dir):
    server = serve("--model", "faces", "--shadow", "faces=blind")
    server.post("/count-faces/", project_dir / "photos" / "astronaut.jpg")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [p for p in server.client.get("/models/faces/shadow").json()["pairs"] if p["compared"]]:
        time.sleep(0.2)  # the shadow process has answered: it is past its start-up
    assert server.client.get("/models/faces/shadow").json()["pairs"][0]["compared"] == 1
    helpers = children(server.process.pid)
    shadow = [pid for pid in helpers if b"spawn_main" in open(f"/proc/{pid}/cmdline", "rb").read()]
    assert len(shadow) == 1, "the shadow process did not start"
    os.kill(shadow[0], signal.SIGSTOP)  # as the server leaves it while a live request is open
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(pid) for pid in helpers):
        time.sleep(0.2)
    assert not [pid for pid in helpers if alive(pid)]


def test_state_trouble_while_serving_keeps_the_live_version_and_says_so_once(serve, project_dir):
    subprocess.run([sys.executable, "-m", "mldeploy", "promote", "faces", "blind"], cwd=project_dir, env=subprocess_env(), check=True,
                   capture_output=True)
    server = serve("--model", "faces")
    assert server.client.get("/readyz").json()["models"]["faces"] == "faces@blind"
    for path in (project_dir / ".mldeploy").iterdir():
        path.unlink()
    wait_until(lambda: "disappeared; keeping" in server.output())
    time.sleep(1.5)  # six more polls: the condition is said once, not once a poll
    assert server.client.get("/readyz").json()["models"]["faces"] == "faces@blind"  # never silently back to v1
    (project_dir / ".mldeploy" / "state.db").write_bytes(b"this is not a database" * 100)
    wait_until(lambda: "not a readable mldeploy state database" in server.output())
    time.sleep(1.5)  # six more polls
    assert server.client.get("/readyz").json()["models"]["faces"] == "faces@blind"
    warnings = [line for line in server.output().splitlines() if "state store:" in line]
    assert len(warnings) == 2, warnings  # one per change of condition, not one per poll
    assert "disappeared; keeping the current routing (faces: faces@blind)" in warnings[0]
    assert "not a readable mldeploy state database" in warnings[1]
    assert json.loads(server.client.get("/models").content)["models"][0]["live"] == "faces@blind"
