"""What the benchmark scripts share: paths, the environment, image sets, timing, the mldeploy command.

Scripts run as ``python benchmarks/NAME.py`` and import this module as ``common``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclass(frozen=True)
class Timed:
    """What :func:`timed` measured: ``fn``'s result, wall seconds, and CPU seconds of this process (all threads)."""

    result: Any
    wall: float
    cpu: float


def timed(fn: Callable[[], Any]) -> Timed:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return Timed(result, time.perf_counter() - wall, time.process_time() - cpu)


def build_folder(folder: Path, sizes: Sequence[int], count: int | None = None) -> list[Path]:
    """JPEG copies of ``sample_images/*.jpg`` resized so their longest side is each of ``sizes``.

    Every photo at every size by default; with ``count``, that many files: the photos in turn, each
    round at the next size.
    """
    from PIL import Image

    photos = sorted((ROOT / "sample_images").glob("*.jpg"))
    plan = [(p, s) for p in photos for s in sizes] if count is None else [
        (photos[i % len(photos)], sizes[(i // len(photos)) % len(sizes)]) for i in range(count)]
    written = []
    for i, (photo, side) in enumerate(plan):
        with Image.open(photo) as img:
            scale = side / max(img.size)
            img = img.convert("RGB").resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
            name = f"{photo.stem}_{side}.jpg" if count is None else f"{i:03d}_{photo.stem}_{side}.jpg"
            img.save(folder / name, quality=90)
            written.append(folder / name)
    return written


def mldeploy_command() -> list[str]:
    """The installed ``mldeploy`` script beside this Python, else ``python -m mldeploy``."""
    script = Path(sys.executable).with_name("mldeploy")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mldeploy"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verdict(missed: list[str]) -> int:
    """Print each missed target (or that all were met) and return the script's exit status."""
    for line in missed:
        print(f"MISSED: {line}")
    print("all targets met" if not missed else "")
    return 1 if missed else 0


def run_clients(workers: Sequence[Callable[[], None]], latencies: list[float]) -> dict[str, float]:
    """Run the load generator's client threads to the end; requests/second, p50 and p99 of ``latencies``
    (which the clients fill)."""
    import statistics
    import threading

    threads = [threading.Thread(target=w) for w in workers]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "rps": len(latencies) / wall, "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


@dataclass(frozen=True)
class DriverRun:
    """What :func:`run_measuring_peak` saw: the command's output, wall seconds, and its own peak memory."""

    returncode: int
    stdout: str
    stderr: str
    wall: float
    peak_mb: float


def run_measuring_peak(command: Sequence[str], cwd: Path, env: dict) -> DriverRun:
    """Run ``command`` and read its high-water mark (``VmHWM``) while it runs: the process's own peak,
    not its children's (Ray's workers are other processes)."""
    import subprocess
    import tempfile

    out, err = (tempfile.TemporaryFile("w+") for _ in range(2))
    started = time.perf_counter()
    process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=out, stderr=err, text=True)
    peak_kb = 0
    while process.poll() is None:
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    wall = time.perf_counter() - started
    out.seek(0)
    err.seek(0)
    return DriverRun(process.returncode, out.read(), err.read(), wall, peak_kb / 1024)
