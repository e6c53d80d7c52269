"""The server's side of a capture: which requests to keep, writing them after the answer, and saying
(once) when the folder stops taking them.

A request is captured after its response went out (a Starlette background task), so capturing never
adds to the client's latency. With ``--capture DIR`` a share of every served model's requests is kept
there. Without it, a live shadow still needs its requests: they go to a private temporary capture
(``0700``, removed when the server stops) with the same byte budget, so the shadow works on every
request it is given and nothing of it is held in memory.

A capture that cannot be written (the disk is full, the folder became read-only or was deleted) is
logged once, counted in ``mldeploy_capture_failed``, and retried on the next request; the live answer
was already sent and never fails for it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path

from mldeploy.capture import CaptureStore
from mldeploy.detections import Detections
from mldeploy.errors import CaptureError
from mldeploy.server.config import ServerConfig
from mldeploy.server.metrics import Metrics

log = logging.getLogger("mldeploy.server")


class Capturer:
    """Decides, writes and counts captures; :attr:`store` is what the live shadow drains."""

    def __init__(self, config: ServerConfig, metrics: Metrics) -> None:
        self.metrics = metrics
        self.rate = config.capture_rate
        self.persistent = config.capture_dir is not None
        self._temporary: Path | None = None
        if config.capture_dir is not None:
            self.store = CaptureStore(config.capture_dir, config.capture_max_bytes)
        else:
            self._temporary = Path(tempfile.mkdtemp(prefix="mldeploy-shadow-"))  # 0700
            self.store = CaptureStore(self._temporary / "capture", config.capture_max_bytes)
        # (model, live, shadow, captured=, evicted=) -> None: requests captured for a shadow, and those it lost to the budget
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._problem: str | None = None
        self.pending_signal = threading.Event()  # set when a request for a shadow was captured
        # Held while a request changes state in the capture *and* in the counters (captured, settled,
        # evicted), and while they are read together: captured = compared + errors + pending + evicted, always.
        self.books = threading.Lock()

    @property
    def folder(self) -> Path:
        return self.store.folder

    def wants(self, model: str, shadow: str | None) -> bool:
        """Capture this request? With ``--capture``, the configured share of each model's requests, spread
        evenly (request n is kept when n x rate passes a whole number: 0.25 keeps every fourth), and the
        shadow sees that share. Without it, every request a shadow waits for, in the temporary capture."""
        if not self.persistent:
            return shadow is not None
        with self._lock:
            n = self._seen.get(model, 0)
            self._seen[model] = n + 1
        return int((n + 1) * self.rate) > int(n * self.rate)

    def capture(self, data: bytes, model: str, version: str, route: str, answer: Detections, seconds: float, shadow: str | None,
                request_id: str | None = None) -> None:
        """Write one request (called after the response, on a worker thread); never raises."""
        try:
            with self.books:
                added = self.store.add(data, model, version, route, answer, seconds, shadow, request_id)
                self._count(added, model, version, shadow)
        except (OSError, CaptureError) as exc:
            self.metrics.capture_failed.labels(model).inc()
            self._report(f"cannot write to capture folder {self.folder}: {getattr(exc, 'strerror', None) or exc}; "
                         "requests are answered but not captured (the live shadow misses them)")
            return
        except Exception:  # a capture must never take the server down
            self.metrics.capture_failed.labels(model).inc()
            log.exception("capture failed")
            return
        self._report(None)
        self.metrics.captured.labels(model).inc()
        self.metrics.capture_bytes.set(added.used_bytes)
        if added.id is not None and shadow is not None:
            self.pending_signal.set()

    def _count(self, added, model: str, version: str, shadow: str | None) -> None:
        for (m, live, shadow_version), n in added.evicted_pending.items():
            self.metrics.capture_evicted.labels(m).inc(n)

    def _report(self, problem: str | None) -> None:
        """Log the folder's condition when it changes, not on every request."""
        with self._lock:
            if problem == self._problem:
                return
            before, self._problem = self._problem, problem
        if problem is not None:
            log.error("capture: %s", problem)
        elif before is not None:
            log.warning("capture: writing to %s again", self.folder)

    def close(self) -> None:
        self.store.close()
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
