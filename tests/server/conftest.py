"""A real uvicorn server process on a free loopback port, in the test's project folder."""

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import subprocess_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, cwd, args, env, wrap=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(cwd / f"server-{self.port}.log", "w+")
        command = [sys.executable, "-m", "mldeploy", "serve", "--port", str(self.port), "--log-level", "warning", *args]
        command = wrap(command) if wrap is not None else command
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in 120 s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def post(self, path, image_path, name=None, **kwargs):
        with open(image_path, "rb") as fh:
            return self.client.post(path, files={"file": (name or image_path.name, fh.read())}, **kwargs)

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()
        self.log.close()
        return self.process.returncode


@pytest.fixture
def serve(project_dir):
    """``serve(*args, wrap=None, **env)`` starts a server (``wrap(command)`` may prefix its command) in the project folder; every one is stopped at the end."""
    started = []

    def start(*args, wrap=None, **env):
        server = Server(project_dir, [str(a) for a in args], subprocess_env(**env), wrap)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
