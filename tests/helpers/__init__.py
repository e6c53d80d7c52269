"""What the tests share: paths, the sample photos, crafted files, the subprocess environment, a browser.

Fixtures live in the conftest files; plain helpers live here (and in the modules beside this one:
tiny networks the tests build, a planted faulty detector, pycocotools as an independent reference).
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SAMPLES = REPO / "sample_images"
#: The sample photos, in the order tests send them.
PHOTOS = ["astronaut.jpg", "camera.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]

#: Flags for a headless Chromium in a container: no sandbox, GPU or network chatter.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run"]


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for a huge greyscale image, with almost no pixel data: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for ``python -m mldeploy`` in a child process: this checkout importable, TensorFlow quiet."""
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def chromium() -> str | None:
    """Path of an installed Chromium (Debian's ``chromium``), or None."""
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)


def as_unprivileged(command: list[str]) -> list[str] | None:
    """``command`` run without root's power to ignore file permissions (a read-only folder is read-only
    to it), or None when that cannot be arranged here. Root keeps its uid but loses CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH; anyone else needs nothing."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command] if setpriv else None


def wait_until(predicate, timeout: float = 10.0, every: float = 0.05):
    """``predicate()``'s first truthy value, polled until ``timeout`` seconds: a test waits on a condition,
    never for a fixed time. ``IndexError`` and ``KeyError`` count as "not yet" (nothing recorded yet).

    Raises:
        AssertionError: the condition did not hold in time.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (IndexError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s")
        time.sleep(every)
