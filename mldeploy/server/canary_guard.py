"""The live canary guard: rolls a canary back when the live gates fail on what its clients got.

The bounds are gates of :data:`mldeploy.rollout.gates.GATES` (``max_error_rate``, ``max_p95_ms``),
judged by the same :func:`~mldeploy.rollout.gates.evaluate` that ``mldeploy shadow`` and ``canary``
use, on a :class:`~mldeploy.rollout.gates.LiveWindow` of the canary's requests.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Mapping

from mldeploy.rollout.gates import LiveWindow, evaluate
from mldeploy.rollout.latency import LatencyStats


@dataclass
class _Watch:
    requests: int = 0
    errors: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=500))

    def window(self) -> LiveWindow:
        return LiveWindow(self.requests, self.errors, LatencyStats.of(list(self.latencies)))


class CanaryGuard:
    """Counts each canary request; after ``min_requests``, a failing gate calls ``roll_back(model, version, reason)``."""

    def __init__(self, bounds: Mapping[str, float], min_requests: int, roll_back: Callable[[str, str, str], None]) -> None:
        self.bounds = dict(bounds)
        self.min_requests = min_requests
        self._roll_back = roll_back
        self._watches: dict[tuple[str, str], _Watch] = {}
        self._lock = threading.Lock()

    def observe(self, model: str, version: str, seconds: float | None) -> None:
        """One canary request: ``seconds`` of inference, or ``None`` when the canary failed on it."""
        if not self.bounds:
            return
        with self._lock:
            watch = self._watches.setdefault((model, version), _Watch())
            watch.requests += 1
            if seconds is None:
                watch.errors += 1
            else:
                watch.latencies.append(seconds)
            if watch.requests < self.min_requests:
                return
            failed = [g for g in evaluate(watch.window(), self.bounds) if g.failed]
            if not failed:
                return
            del self._watches[(model, version)]
        reason = (f"canary {model}@{version} rolled back by the server's guard after {watch.requests} requests: "
                  + "; ".join(g.short for g in failed))
        self._roll_back(model, version, reason)
