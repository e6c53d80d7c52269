"""The shadow mirror: queues the live answer with its image, runs the shadow version in idle time,
compares, and keeps the counters that ``/models/{name}/shadow`` and the state store report.

Shadow work is queued (bounded in jobs and in bytes: each job holds a decoded image, so a full queue,
or one whose images would pass the memory budget, drops the job, counted) and fed by one thread to a child
process (:class:`~mldeploy.server.shadow.runner.ShadowRunner`) that runs only while no prediction
request is open: the live answer never waits for it, and a shadow version that raises, or even
crashes, is counted and never seen by a client. Under sustained load the shadow sees a sample of the
traffic, and the drops say how much it missed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from mldeploy.compare import AgreementCounts, match
from mldeploy.detections import Detections
from mldeploy.errors import MldeployError
from mldeploy.models.base import ModelSpec
from mldeploy.server.metrics import Metrics
from mldeploy.server.shadow.runner import ShadowRunner
from mldeploy.store.shadow_stats import COVERAGE

log = logging.getLogger("mldeploy.server")


@dataclass
class ShadowJob:
    model: str
    live: ModelSpec
    shadow: ModelSpec
    image: np.ndarray
    live_detections: Detections

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.live.version, self.shadow.version)


@dataclass(frozen=True)
class Tally:
    """Counters of one live/shadow pair since the last flush: agreement plus coverage (mergeable)."""

    agreement: AgreementCounts = AgreementCounts()
    requests: int = 0
    errors: int = 0
    dropped: int = 0

    def __add__(self, other: "Tally") -> "Tally":
        return Tally(self.agreement + other.agreement, self.requests + other.requests, self.errors + other.errors, self.dropped + other.dropped)

    def to_row(self) -> dict[str, float]:
        return {**self.agreement.to_row(), **{name: getattr(self, name) for name in COVERAGE}}


class ShadowMirror:
    """Queue, worker thread, child process and counters of the live shadow."""

    def __init__(self, metrics: Metrics, store_factory, queue_size: int, memory_bytes: int = 256 << 20) -> None:
        self.metrics = metrics
        self._store = store_factory  # () -> the state store, where counters are flushed
        self._queue: queue.Queue[ShadowJob] = queue.Queue(maxsize=queue_size)
        self.memory_bytes = memory_bytes
        self.queued_bytes = 0  # decoded images in the queue
        self._bytes_lock = threading.Lock()
        self._tallies: dict[tuple[str, str, str], Tally] = {}
        self._tally_lock = threading.Lock()
        self._idle = threading.Condition()
        self._in_flight = 0  # prediction requests being answered now
        self._stop = threading.Event()
        self._runner: ShadowRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="mldeploy-shadow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._runner is not None:
            self._runner.stop()
        self.flush()

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Around each prediction request, upload to answer: while any is open, shadow work waits and
        the shadow process is paused, so shadowing never takes CPU from a live answer."""
        with self._idle:
            self._in_flight += 1
            if self._in_flight == 1 and self._runner is not None:
                self._runner.pause()
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                if not self._in_flight:
                    if self._runner is not None:
                        self._runner.resume()
                    self._idle.notify_all()

    def submit(self, job: ShadowJob) -> None:
        size = job.image.nbytes
        with self._bytes_lock:
            fits = self.queued_bytes + size <= self.memory_bytes
            if fits:
                try:
                    self._queue.put_nowait(job)
                    self.queued_bytes += size
                except queue.Full:
                    fits = False
        if not fits:
            self.metrics.shadow_dropped.labels(job.model).inc()
            self._count(job.key, Tally(dropped=1))
        self.metrics.shadow_queue.set(self._queue.qsize())
        self.metrics.shadow_queue_bytes.set(self.queued_bytes)

    def _work(self) -> None:
        # The child process is started (and restarted) from this thread, which lives as long as the
        # mirror: the child's parent-death signal follows the thread that started it.
        self._runner = ShadowRunner()
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._bytes_lock:
                self.queued_bytes -= job.image.nbytes
            self.metrics.shadow_queue.set(self._queue.qsize())
            self.metrics.shadow_queue_bytes.set(self.queued_bytes)
            with self._idle:  # start shadow work only between live requests; under load the queue fills and drops
                while self._in_flight and not self._stop.is_set():
                    self._idle.wait(0.5)
            try:
                self._run(job)
            except Exception:  # never let the shadow thread die
                log.exception("shadow job failed")
            finally:
                self._queue.task_done()

    def _run(self, job: ShadowJob) -> None:
        labels = job.key
        try:
            answer = self._runner.run(job.shadow, job.image)
        except MldeployError as exc:  # the shadow process crashed or hung; a new one is running
            answer, error = None, str(exc)
        else:
            error = answer.error
        if error is not None:
            log.warning("shadow %s failed: %s", job.shadow.ref, error)
            self.metrics.shadow_results.labels(*labels, "error").inc()
            self._count(job.key, Tally(requests=1, errors=1))
            return
        self.metrics.inference.labels(job.model, job.shadow.version, "shadow").observe(answer.seconds)
        comparison = match(job.live_detections, answer.detections)
        self.metrics.shadow_results.labels(*labels, "agree" if comparison.agrees else "disagree").inc()
        self._count(job.key, Tally(AgreementCounts.of(comparison), requests=1))

    def _count(self, key: tuple[str, str, str], tally: Tally) -> None:
        with self._tally_lock:
            self._tallies[key] = self._tallies.get(key, Tally()) + tally

    def flush(self) -> str | None:
        """Add the counters gathered since the last flush to the state store. On failure they are kept for
        the next try, and the reason is returned (the caller logs a change of condition once, not every poll)."""
        with self._tally_lock:
            pending, self._tallies = self._tallies, {}
        problem = None
        for (model, live, shadow), tally in pending.items():
            try:
                self._store().add_shadow_stats(model, live, shadow, tally.to_row())
            except MldeployError as exc:
                problem = f"shadow counters not recorded (kept for the next try): {exc}"
                self._count((model, live, shadow), tally)
        return problem
