"""The live shadow: drains the capture, runs the shadow version, compares with the live answer, counts.

Every request answered by a model that has a shadow is captured (:mod:`mldeploy.server.capture`) with
its live answer, marked *pending* for that shadow. One thread here takes the oldest pending request,
hands its encoded bytes to a child process (:class:`~mldeploy.server.shadow.runner.ShadowRunner`), which
decodes and runs the shadow, compares the answer with the stored live one, and records the result in
the capture, whose counters change in the same transaction (the state store is brought up to them,
exactly once, at each flush). Nothing waits in memory: under load the requests wait on disk and are
compared when the server is idle, and only the capture's byte budget can lose one (counted as evicted).

``idle`` mode (the default) starts shadow work only while no prediction request is open and freezes
the child (SIGSTOP) whenever one arrives, so the shadow never takes CPU from a live answer. ``always``
runs it at once, beside the live requests: for machines with cores or an accelerator to spare.

A shadow that raises, hangs or crashes its process is counted and never seen by a client; a crash is
retried once (the process may have been killed for a reason unrelated to the image) before the request
counts as an error. A request whose shadow is no longer the model's shadow stays pending in the capture
(``mldeploy shadow --capture`` can still replay it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, Iterator, Mapping

from mldeploy.capture import COMPARED, ERROR, CaptureRecord
from mldeploy.capture.store import MAX_ATTEMPTS
from mldeploy.compare import AgreementCounts, match
from mldeploy.errors import CaptureError, MldeployError
from mldeploy.models.base import ModelSpec
from mldeploy.server.capture import Capturer
from mldeploy.server.metrics import Metrics
from mldeploy.server.shadow.runner import ShadowRunner

log = logging.getLogger("mldeploy.server")

#: Pending requests read from the capture at once (one query per batch, not per request).
BATCH = 32


class ShadowMirror:
    """The worker thread, child process and counters of the live shadow.

    Args:
        shadows: ``() -> {model: (live spec, shadow spec)}`` for the models that have a shadow now.
        mode: ``idle`` or ``always`` (see the module's docstring).
    """

    def __init__(self, metrics: Metrics, store_factory, capturer: Capturer, shadows: Callable[[], Mapping[str, tuple[ModelSpec, ModelSpec]]],
                 mode: str = "idle", max_pixels: int | None = None) -> None:
        self.metrics = metrics
        self._store = store_factory  # () -> the state store, where counters are flushed
        self.capturer = capturer
        self._shadows = shadows
        self.mode = mode
        self.max_pixels = max_pixels
        self._flush_lock = threading.Lock()
        self._idle = threading.Condition()
        self._in_flight = 0  # prediction requests being answered now
        self._stop = threading.Event()
        self._runner: ShadowRunner | None = None
        self._thread: threading.Thread | None = None
        self.busy = False  # a request is with the shadow now

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="mldeploy-shadow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.capturer.pending_signal.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._runner is not None:
            self._runner.stop()
        self.flush()

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Around each prediction request, upload to answer: in ``idle`` mode, while any is open, shadow
        work waits and the shadow process is paused, so shadowing never takes CPU from a live answer."""
        if self.mode != "idle":
            yield
            return
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

    # -- the worker ------------------------------------------------------------------------------
    def _next(self) -> tuple[list[CaptureRecord], ModelSpec] | None:
        """A batch of the oldest requests waiting for one of the current shadows (one query per batch)."""
        for model, (live, shadow) in self._shadows().items():
            records = self.capturer.store.pending_records(model, shadow.version, BATCH)
            if records:
                return records, shadow
        return None

    def _work(self) -> None:
        # The child process is started (and restarted) from this thread, which lives as long as the
        # mirror: the child's parent-death signal follows the thread that started it.
        self._runner = ShadowRunner()
        published = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - published > 0.5:
                    self.publish_pending()
                    published = time.monotonic()
                job = self._next()
                if job is None:
                    self.capturer.pending_signal.wait(0.5)
                    self.capturer.pending_signal.clear()
                    continue
                records, shadow = job
                for record in records:
                    if self._stop.is_set() or self._shadows().get(record.model, (None, None))[1] != shadow:
                        break  # stopping, or the routing changed: take the next batch afresh
                    self._wait_for_idle()
                    self._run(record, shadow)
            except Exception:  # never let the shadow thread die (a capture folder deleted, a locked index)
                log.exception("shadow worker")
                self._stop.wait(1.0)

    def _wait_for_idle(self) -> None:
        if self.mode == "idle":
            with self._idle:  # start shadow work only between live requests
                while self._in_flight and not self._stop.is_set():
                    self._idle.wait(0.5)

    def publish_pending(self) -> None:
        """Set the pending gauge from the capture: every half second here, and on each scrape of
        ``/metrics`` (so it agrees with ``/models/{name}/shadow`` read at the same moment)."""
        waiting: dict[tuple[str, str], int] = {(model, shadow.version): 0 for model, (_live, shadow) in self._shadows().items()}
        for (model, _live, shadow), n in self.capturer.store.pending().items():
            waiting[(model, shadow)] = waiting.get((model, shadow), 0) + n
        self.metrics.shadow_pending.clear()
        for (model, shadow), n in waiting.items():
            self.metrics.shadow_pending.labels(model, shadow).set(n)

    def _run(self, record: CaptureRecord, shadow: ModelSpec) -> None:
        labels = (record.model, record.version, shadow.version)
        store = self.capturer.store
        try:
            data = store.read_blob(record)
        except (OSError, CaptureError) as exc:  # pruned or deleted meanwhile, or replaced: never compared as if captured
            with self.capturer.books:
                store.settle(record.id, ERROR, f"captured image unreadable: {getattr(exc, 'strerror', None) or exc}")
            return
        self.busy = True
        try:
            answer = self._runner.run(shadow, data, self.max_pixels)
        except MldeployError as exc:  # the shadow process crashed or hung; a new one is running
            if store.attempt(record.id) < MAX_ATTEMPTS:
                log.warning("shadow %s: %s; request #%d is tried again", shadow.ref, exc, record.id)
                return
            answer, error = None, str(exc)
        else:
            error = answer.error
        finally:
            self.busy = False
        if error is not None:
            log.warning("shadow %s failed on captured request #%d: %s", shadow.ref, record.id, error)
            with self.capturer.books:
                if store.settle(record.id, ERROR, error):
                    self.metrics.shadow_results.labels(*labels, "error").inc()
            return
        self.metrics.inference.labels(record.model, shadow.version, "shadow").observe(answer.seconds)
        comparison = match(record.answer, answer.detections)
        counts = AgreementCounts.of(comparison)
        with self.capturer.books:
            if store.settle(record.id, COMPARED, counts.to_row()):  # the count, in the capture's transaction
                self.metrics.shadow_results.labels(*labels, "agree" if comparison.agrees else "disagree").inc()

    def flush(self) -> str | None:
        """Bring the state store's counters up to the capture's (the record: every count changes in the
        transaction that changes a request), exactly once per capture (the store remembers what it added
        from it). On failure nothing is lost, the next flush catches up, and the reason is returned (the
        caller logs a change of condition once, not every poll)."""
        capture = self.capturer.store
        try:
            with self._flush_lock:
                source, totals = capture.identity, capture.shadow_totals()
                state = self._store()
                for (model, live, shadow), counted in totals.items():
                    state.record_shadow_totals(model, live, shadow, source, counted)
        except MldeployError as exc:
            return f"shadow counters not recorded (the capture keeps them for the next try): {exc}"
        return None
