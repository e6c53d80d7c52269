"""``mldeploy serve`` as a command: what it checks before loading any model, what it says at start-up,
and how it stops. Real server processes on loopback ports."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import subprocess_env
from tests.server.conftest import free_port

pytestmark = pytest.mark.server


def serve_command(*args):
    return [sys.executable, "-m", "mldeploy", "serve", *map(str, args)]


def test_a_busy_port_is_one_line_and_exit_2_before_any_model_loads(project_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(serve_command("--port", port), cwd=project_dir, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: in use (another server?): choose another --port, or --port 0 for a free one"
    assert "cv2" not in result.stderr and "loading" not in result.stderr


def test_an_unreadable_state_is_exit_5_before_any_model_loads(project_dir):
    state = project_dir / ".mldeploy"
    state.mkdir()
    (state / "state.db").write_bytes(b"this is not a database, and it is long enough to look like a header" * 10)
    result = subprocess.run(serve_command("--port", "0"), cwd=project_dir, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 5, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ") and "starting on" not in result.stderr


def test_start_up_says_what_shadow_leaves_in_the_state_and_ctrl_c_stops_cleanly(project_dir):
    """Ctrl-C on a terminal reaches the whole process group: the server and its shadow child. The stop
    must be clean: no traceback from the child, no leaked semaphores, exit 130 without an error line."""
    port = free_port()
    log = open(project_dir / "serve.log", "w+")
    process = subprocess.Popen(serve_command("--model", "faces", "--shadow", "faces=blind", "--port", port), cwd=project_dir,
                               env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        with open(project_dir / "photos" / "camera.jpg", "rb") as fh:
            assert httpx.post(f"http://127.0.0.1:{port}/predict", files={"file": ("camera.jpg", fh.read())}, timeout=60).status_code == 200
        time.sleep(1)  # the shadow child has work in hand
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log.seek(0)
    output = log.read()
    assert code == 130 and "stopped (Ctrl-C)" in output and "error:" not in output, output
    assert "--shadow faces=blind is saved in the state" in output and "'mldeploy route faces --no-shadow' ends it" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output and "leaked" not in output, output


def test_a_version_that_cannot_load_is_one_line_and_exit_4(project_dir, yolo_dir):
    result = subprocess.run(serve_command("--model", "objects", "--port", "0"), cwd=project_dir, env=subprocess_env(MLDEPLOY_YOLO_DIR=str(yolo_dir)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 4, result.stderr  # not uvicorn's start-up failure (3), which reads as a failed gate
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot load: missing yolov4-tiny.cfg" in errors[0] and "Traceback" not in result.stderr
