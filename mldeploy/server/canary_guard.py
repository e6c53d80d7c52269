"""The live canary guard: rolls a canary back when the live gates fail on what its clients got.

The bounds are gates of :data:`mldeploy.rollout.gates.GATES` (``max_error_rate``, ``max_p95_ms``),
judged by the same :func:`~mldeploy.rollout.gates.evaluate` that ``mldeploy shadow`` and ``canary``
use, on a :class:`~mldeploy.rollout.gates.LiveWindow` of the canary's requests.

Two windows: this replica's requests, judged on each request (a fast reaction, no database on the
request path), and the fleet's, judged every second by :meth:`CanaryGuard.publish` after it adds this
replica's counts to the state store (every replica does): a canary whose errors are spread over many
replicas is rolled back on the fleet's error rate even when no replica alone has seen enough.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from mldeploy.rollout.analysis import fleet_window
from mldeploy.rollout.gates import LiveWindow, evaluate
from mldeploy.rollout.latency import LatencyStats
from mldeploy.store.canary_stats import bucket_of


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
        self._pending: dict[tuple[str, str], list] = {}  # (model, version) -> [requests, errors, {bucket: count}] not yet published
        self._lock = threading.Lock()

    def observe(self, model: str, version: str, seconds: float | None) -> None:
        """One canary request: ``seconds`` of inference, or ``None`` when the canary failed on it."""
        with self._lock:
            pending = self._pending.setdefault((model, version), [0, 0, {}])
            pending[0] += 1
            if seconds is None:
                pending[1] += 1
            else:
                b = bucket_of(seconds)
                pending[2][b] = pending[2].get(b, 0) + 1
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

    def publish(self, store, live_canaries: dict[str, str], heartbeat: Iterable[str] = ()) -> None:
        """Add this replica's counts to the store, then judge each live canary (``model -> version``) on
        the fleet's window; a failing gate rolls it back (compare-and-set: once for the fleet). The
        canaries of models in ``heartbeat`` (served by ``--serve-version``) are written every time, counts
        or not, so the fleet sees which version the controller's pods serve now (:func:`pinned_canary`)."""
        with self._lock:
            for model in heartbeat:
                if model in live_canaries:
                    self._pending.setdefault((model, live_canaries[model]), [0, 0, {}])
            pending, self._pending = self._pending, {}
        items = list(pending.items())
        for n, ((model, version), (requests, errors, buckets)) in enumerate(items):
            if live_canaries.get(model) != version:  # a canary removed meanwhile: its counts were cleared with it
                continue
            try:
                store.add_canary_stats(model, version, requests, errors, buckets)
            except Exception:
                self._merge_back(items[n:])  # the store is away: keep what was not added, for the next try
                raise
        if not self.bounds:
            return
        for model, version in live_canaries.items():
            window = fleet_window(store, model, version)
            if window.requests < self.min_requests:
                continue
            failed = [g for g in evaluate(window, self.bounds) if g.failed]
            if failed:
                reason = (f"canary {model}@{version} rolled back by the fleet's guard after {window.requests} requests on every replica: "
                          + "; ".join(g.short for g in failed))
                self._roll_back(model, version, reason)

    def _merge_back(self, items) -> None:
        with self._lock:
            for key, (requests, errors, buckets) in items:
                pending = self._pending.setdefault(key, [0, 0, {}])
                pending[0] += requests
                pending[1] += errors
                for b, count in buckets.items():
                    pending[2][b] = pending[2].get(b, 0) + count
