"""Shadow, canary and blue-green on a running server, driven through the CLI's state store and the admin API."""

import json
import signal
import subprocess
import sys
import threading
import time

from tests.helpers import PHOTOS, subprocess_env, wait_until


def mldeploy(project_dir, *args):
    result = subprocess.run([sys.executable, "-m", "mldeploy", *args], cwd=project_dir, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def until(condition, timeout=5.0) -> bool:
    try:
        return bool(wait_until(condition, timeout))
    except AssertionError:
        return False


def answers(server, project_dir, **headers):
    return {name: server.post("/count-faces/", project_dir / "photos" / name, headers=headers).json() for name in PHOTOS}


def test_a_shadow_that_raises_never_touches_the_live_answers(serve, project_dir, flaky):
    plain = serve("--model", "faces")
    expected = answers(plain, project_dir)
    plain.stop()
    server = serve("--model", "faces", "--shadow", "faces=flaky")
    for _ in range(3):
        got = answers(server, project_dir)
        assert {k: v["detections"] for k, v in got.items()} == {k: v["detections"] for k, v in expected.items()}
        assert {v["version"] for v in got.values()} == {"faces@v1"}
    assert until(lambda: (lambda p: p["compared"] + p["errors"] == p["captured"] == 15)(server.client.get("/models/faces/shadow").json()["pairs"][0]))
    pair = server.client.get("/models/faces/shadow").json()["pairs"][0]
    assert (pair["live"], pair["shadow"], pair["errors"], pair["compared"]) == ("faces@v1", "faces@flaky", 6, 9)  # coffee, rocket x3
    assert pair["disagreement"] == 0 and pair["recall"] == 1.0
    metrics = server.client.get("/metrics").text
    assert 'mldeploy_shadow_comparisons_total{live="v1",model="faces",result="error",shadow="flaky"} 6.0' in metrics


def test_a_shadow_started_from_the_cli_reaches_the_running_server(serve, project_dir):
    server = serve("--model", "faces")
    mldeploy(project_dir, "route", "faces", "--shadow", "blind")
    assert until(lambda: server.client.get("/models").json()["models"][0]["shadow"] == "faces@blind", timeout=1.5)
    answers(server, project_dir)
    assert until(lambda: server.client.get("/models/faces/shadow").json()["pairs"][0]["compared"] == 5)
    pair = server.client.get("/models/faces/shadow").json()["pairs"][0]
    assert pair["recall"] == 0 and pair["boxes"]["missing"] == 3  # recorded in the state store...
    from mldeploy.store import open_store

    assert open_store(project_dir / ".mldeploy").shadow_stats("faces")[0]["missing"] == 3  # ...where the CLI can read it


def test_canary_weights_0_and_100_and_sticky_clients(serve, project_dir):
    server = serve("--model", "faces", "--canary", "faces=slow:100")
    assert {v["version"] for v in answers(server, project_dir).values()} == {"faces@slow"}
    mldeploy(project_dir, "route", "faces", "--weight", "0")
    assert until(lambda: server.client.get("/models").json()["models"][0]["canary_weight"] == 0, timeout=1.5)
    assert {v["version"] for v in answers(server, project_dir).values()} == {"faces@v1"}
    mldeploy(project_dir, "route", "faces", "--weight", "50")
    assert until(lambda: server.client.get("/models").json()["models"][0]["canary_weight"] == 50, timeout=1.5)
    photo = project_dir / "photos" / "camera.jpg"
    sides = {}
    for n in range(40):
        client = f"user-{n}"
        seen = {server.post("/count-faces/", photo, headers={"X-Client-Id": client}).json()["route"] for _ in range(3)}
        assert len(seen) == 1  # a client stays on its side
        sides[client] = seen.pop()
    assert 8 <= list(sides.values()).count("canary") <= 32


def test_promote_and_rollback_while_requests_flow(serve, project_dir):
    server = serve("--model", "faces")
    photo = project_dir / "photos" / "astronaut.jpg"
    seen, failures, stop = [], [], threading.Event()

    def traffic():
        while not stop.is_set():
            response = server.post("/count-faces/", photo)
            if response.status_code != 200:
                failures.append(response.status_code)
            else:
                seen.append((time.monotonic(), response.json()["version"]))

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        assert until(lambda: len(seen) >= 8)  # traffic flows before the switch
        mldeploy(project_dir, "promote", "faces", "blind")
        assert until(lambda: seen and seen[-1][1] == "faces@blind", timeout=2)
        switched = len(seen)
        assert until(lambda: len(seen) >= switched + 8)  # and keeps flowing on the new version
        mldeploy(project_dir, "rollback", "faces")
        assert until(lambda: seen[-1][1] == "faces@v1", timeout=2)
        back = len(seen)
        assert until(lambda: len(seen) >= back + 4)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert {v for _, v in seen} == {"faces@v1", "faces@blind"}
    assert len(seen) > 20


def test_admin_endpoints_need_the_token(serve, project_dir):
    server = serve("--model", "faces", MLDEPLOY_ADMIN_TOKEN="s3cret")
    body = {"version": "blind", "reason": "try it"}
    assert server.client.post("/admin/models/faces/promote", json=body).status_code == 401
    assert server.client.post("/admin/models/faces/promote", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = server.client.post("/admin/models/faces/promote", json=body, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["routing"]["live"] == "faces@blind"
    assert server.post("/count-faces/", project_dir / "photos" / "astronaut.jpg").json()["version"] == "faces@blind"  # at once
    route = server.client.post("/admin/models/faces/route", json={"canary": "slow", "weight": 100}, headers={"X-Admin-Token": "s3cret"})
    assert route.json()["routing"] == {"live": "faces@blind", "shadow": None, "canary": "faces@slow", "canary_weight": 100.0,
                                        "serve_version": None}
    back = server.client.post("/admin/models/faces/rollback", headers={"Authorization": "Bearer s3cret"})
    assert back.json()["routing"]["live"] == "faces@v1"
    history = json.loads(mldeploy(project_dir, "history", "faces", "--format", "json").stdout)["history"]
    assert [h["action"] for h in history] == ["promote", "route", "rollback"] and history[0]["reason"] == "try it"


def test_the_canary_guard_rolls_back_a_failing_canary(serve, project_dir, flaky):
    server = serve("--model", "faces", "--canary", "faces=flaky:100", "--canary-max-error-rate", "0.2", "--canary-min-requests", "5")
    statuses = [server.post("/count-faces/", project_dir / "photos" / name).status_code for name in PHOTOS * 2]
    assert statuses[:5] == [200, 200, 200, 500, 500]  # the canary's own failures reach its clients...
    assert statuses[-1] == 200 and server.client.get("/models").json()["models"][0]["canary"] is None  # ...until the guard acts
    history = json.loads(mldeploy(project_dir, "history", "faces", "--format", "json").stdout)["history"]
    assert history[-1]["action"] == "canary-rollback" and "error rate 40.0% > 20.0%" in history[-1]["reason"]
    assert "mldeploy_canary_rollbacks_total" in server.client.get("/metrics").text


def test_sigterm_lets_the_request_in_flight_finish(serve, project_dir):
    server = serve("--model", "faces", "--canary", "faces=slow:100")
    photo = project_dir / "photos" / "rocket.jpg"
    result = {}

    def slow_request():
        result["response"] = server.post("/count-faces/", photo)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    thread.join(30)
    assert result["response"].status_code == 200 and result["response"].json()["version"] == "faces@slow"
    # uvicorn finishes the request, runs the shutdown, then re-raises SIGTERM so that a supervisor sees
    # the process ended on that signal (exit status 143 in a shell), rather than crashing.
    assert server.process.wait(30) == -signal.SIGTERM
