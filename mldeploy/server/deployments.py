"""Live routing of a running server: which version answers, which one shadows, which one is canary.

The state store is the single source of truth (the CLI's ``promote``, ``rollback`` and ``route`` and the
admin endpoints all write to it). A watcher thread reads it every ``poll_seconds``; when something
changed it loads any version not loaded yet, *then* swaps in a new immutable :class:`Plan` per model.
A request takes the plan once, at its start, so a switch is atomic and a request in flight finishes on
the version it started with. Every version that was ever live while the server ran stays loaded, so a
rollback is instant.

Shadow work is queued (bounded: a full queue drops the job, counted) and fed by one thread to a child
process (:mod:`mldeploy.server.shadow_runner`) that runs only while no prediction request is open:
the live answer never waits for it, and a shadow version that raises, or even crashes, is counted and
never seen by a client. Under sustained load the shadow sees a sample of the traffic, and the drops
say how much it missed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from mldeploy.compare import match
from mldeploy.detections import Detections
from mldeploy.errors import MldeployError
from mldeploy.models.pins import verify
from mldeploy.models.base import Detector, ModelSpec
from mldeploy.pipeline import run_detector
from mldeploy.project import Project
from mldeploy.rollout.canary import bucket
from mldeploy.rollout.state import Route
from mldeploy.server.config import ServerConfig
from mldeploy.server.metrics import Metrics

log = logging.getLogger("mldeploy.server")


@dataclass(frozen=True)
class Plan:
    """How one model's requests are served right now. Immutable: replaced, never changed."""

    live: ModelSpec
    shadow: ModelSpec | None = None
    canary: ModelSpec | None = None
    weight: float = 0.0  # percent of clients on the canary
    detectors: Mapping[str, Detector] = field(default_factory=dict, compare=False, repr=False)  # ref -> loaded live/canary

    def choose(self, client_id: str) -> tuple[ModelSpec, str]:
        """The version for this client, and its route name. Sticky: a client keeps its side."""
        if self.canary is not None and self.weight > 0 and bucket(client_id, salt=self.live.name) * 100 < self.weight:
            return self.canary, "canary"
        return self.live, "live"

    def describe(self) -> dict[str, Any]:
        return {
            "live": self.live.ref,
            "shadow": self.shadow.ref if self.shadow else None,
            "canary": self.canary.ref if self.canary else None,
            "canary_weight": self.weight if self.canary else 0.0,
        }


@dataclass
class _ShadowJob:
    model: str
    live: ModelSpec
    shadow: ModelSpec
    image: np.ndarray
    live_detections: Detections


@dataclass
class _CanaryWatch:
    requests: int = 0
    errors: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=500))


class Deployments:
    """The plans of every served model, kept in step with the state store."""

    def __init__(self, config: ServerConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.project = Project(state_dir=config.state_dir, config_path=config.config_path)
        self.plans: dict[str, Plan] = {}
        self._snapshot: tuple | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._shadow_queue: queue.Queue[_ShadowJob] = queue.Queue(maxsize=config.shadow_queue)
        self._shadow_counts: dict[tuple[str, str, str], dict[str, float]] = {}
        self._counts_lock = threading.Lock()
        self._canary: dict[tuple[str, str], _CanaryWatch] = {}
        self._canary_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._idle = threading.Condition()
        self._in_flight = 0  # prediction requests being answered now
        self._runner = None  # the shadow process, from start()
        self.ready = False

    # -- start-up and shutdown ---------------------------------------------------------------------
    def start(self) -> None:
        """Apply start-up routing flags, load every version needed, start the watcher and shadow threads."""
        registry = self.project.registry()
        for name in self.config.models:
            if not registry.versions(name):
                from mldeploy.errors import UnknownModelError

                raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(registry.names())}")
        store = self.project.store()
        default = self.project.registry(with_live=False)
        for name, version in self.config.shadow.items():
            registry.resolve(f"{name}@{version}")
            store.set_route(name, current_default=default.default_version(name), shadow=version, reason=f"mldeploy serve --shadow {name}={version}")
        for name, (version, weight) in self.config.canary.items():
            registry.resolve(f"{name}@{version}")
            store.set_route(name, current_default=default.default_version(name), canary=version, weight=weight,
                            reason=f"mldeploy serve --canary {name}={version}:{weight:g}")
        from mldeploy.server.shadow_runner import ShadowRunner

        self._runner = ShadowRunner()
        self.refresh(force=True)
        for target, name in ((self._watch, "mldeploy-watch"), (self._shadow_worker, "mldeploy-shadow")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._runner is not None:
            self._runner.stop()
        self._flush_shadow_counts()

    # -- the plans -----------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> bool:
        """Re-read the store; when it changed, load what is new and swap the plans. True if swapped."""
        with self._refresh_lock:
            return self._refresh(force)

    def _refresh(self, force: bool) -> bool:
        snapshot = self.project.store().snapshot()
        if snapshot == self._snapshot and not force:
            return False
        live, routes = snapshot
        registry = self.project.registry(with_live=False)
        plans = {}
        for name in self.config.models:
            route = routes.get(name, Route())
            live_spec = registry.resolve(f"{name}@{live.get(name, registry.default_version(name))}")
            shadow = self._spec(registry, name, route.shadow_version)
            canary = self._spec(registry, name, route.canary_version)
            shadow = None if shadow == live_spec else shadow  # promoted since: nothing left to compare
            canary = None if canary == live_spec else canary
            # Load before switching (pinned SHA-256s checked first): no request ever waits for a model,
            # and a request uses the detector its plan holds, without touching the load-once cache's lock.
            detectors = {spec.ref: self.project.load(spec) for spec in (live_spec, canary) if spec is not None}
            if shadow is not None:  # loads in the shadow process; its pins are checked here
                verify(shadow, self.project.store().pins(shadow.ref))
            plans[name] = Plan(live_spec, shadow, canary, route.canary_weight if canary else 0.0, detectors)
        self.plans = plans  # one reference swap: a request sees the old plans or the new, never a mix
        self._snapshot = snapshot
        self.metrics.live.clear()
        self.metrics.canary_weight.clear()
        for name, plan in plans.items():
            self.metrics.live.labels(name, plan.live.version).set(1)
            if plan.canary is not None:
                self.metrics.canary_weight.labels(name, plan.canary.version).set(plan.weight)
        log.info("routing: %s", {name: plan.describe() for name, plan in plans.items()})
        return True

    @staticmethod
    def _spec(registry, name: str, version: str | None) -> ModelSpec | None:
        if version is None:
            return None
        try:
            return registry.resolve(f"{name}@{version}")
        except MldeployError as exc:  # e.g. removed from mldeploy.toml: keep serving, say why
            log.warning("ignoring route to %s@%s: %s", name, version, exc)
            return None

    def _watch(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.refresh()
            except Exception:  # a locked or briefly unreadable store: keep the current plans, retry
                log.exception("could not refresh routing from the state store; keeping the current routing")
            self._flush_shadow_counts()

    # -- serving ---------------------------------------------------------------------------------
    def detect(self, name: str, image: np.ndarray, client_id: str) -> tuple[ModelSpec, str, Detections, float]:
        """Answer one request (called on a worker thread): pick the version, run it, queue the shadow."""
        plan = self.plans[name]
        spec, route = plan.choose(client_id)
        detector = plan.detectors[spec.ref]
        try:
            detections, seconds = run_detector(detector, image)
        except MldeployError:
            if route == "canary":
                self._watch_canary(plan, errored=True, seconds=None)
            raise
        self.metrics.inference.labels(name, spec.version, route).observe(seconds)
        if route == "canary":
            self._watch_canary(plan, errored=False, seconds=seconds)
        elif plan.shadow is not None:
            self._queue_shadow(_ShadowJob(name, spec, plan.shadow, image, detections))
        return spec, route, detections, seconds

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

    def _queue_shadow(self, job: _ShadowJob) -> None:
        try:
            self._shadow_queue.put_nowait(job)
        except queue.Full:
            self.metrics.shadow_dropped.labels(job.model).inc()
            self._count(job, dropped=1)
        self.metrics.shadow_queue.set(self._shadow_queue.qsize())

    def _shadow_worker(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._shadow_queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.metrics.shadow_queue.set(self._shadow_queue.qsize())
            with self._idle:  # start shadow work only between live requests; under load the queue fills and drops
                while self._in_flight and not self._stop.is_set():
                    self._idle.wait(0.5)
            try:
                self._run_shadow(job)
            except Exception:  # never let the shadow thread die
                log.exception("shadow job failed")
            finally:
                self._shadow_queue.task_done()

    def _run_shadow(self, job: _ShadowJob) -> None:
        labels = (job.model, job.live.version, job.shadow.version)
        try:
            answer = self._runner.run(job.shadow, job.image)
        except MldeployError as exc:  # the shadow process crashed or hung; a new one is running
            answer = None
            error = str(exc)
        else:
            error = answer.error
        if error is not None:
            log.warning("shadow %s failed: %s", job.shadow.ref, error)
            self.metrics.shadow_results.labels(*labels, "error").inc()
            self._count(job, requests=1, errors=1)
            return
        self.metrics.inference.labels(job.model, job.shadow.version, "shadow").observe(answer.seconds)
        c = match(job.live_detections, answer.detections)
        self.metrics.shadow_results.labels(*labels, "agree" if c.agrees else "disagree").inc()
        self._count(job, requests=1, compared=1, disagreeing=int(not c.agrees), old_boxes=len(c.old), new_boxes=len(c.new),
                    matched=len(c.matched), missing=len(c.missing), extra=len(c.extra), relabelled=len(c.relabelled),
                    iou_sum=sum(iou for _, _, iou in c.matched))

    def _count(self, job: _ShadowJob, **counts: float) -> None:
        key = (job.model, job.live.version, job.shadow.version)
        with self._counts_lock:
            totals = self._shadow_counts.setdefault(key, {})
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + value

    def _flush_shadow_counts(self) -> None:
        with self._counts_lock:
            pending, self._shadow_counts = self._shadow_counts, {}
        store = self.project.store()
        for (model, live, shadow), counts in pending.items():
            try:
                store.add_shadow_stats(model, live, shadow, counts)
            except MldeployError:
                log.exception("could not record shadow counters; they are kept for the next try")
                with self._counts_lock:
                    totals = self._shadow_counts.setdefault((model, live, shadow), {})
                    for name, value in counts.items():
                        totals[name] = totals.get(name, 0) + value

    def shadow_stats(self, name: str) -> list[dict]:
        """The shadow counters recorded for a model, including those not yet written."""
        self._flush_shadow_counts()
        return self.project.store().shadow_stats(name)

    # -- canary guard ----------------------------------------------------------------------------
    def _watch_canary(self, plan: Plan, errored: bool, seconds: float | None) -> None:
        cfg = self.config
        if cfg.canary_max_error_rate is None and cfg.canary_max_p95_ms is None:
            return
        key = (plan.live.name, plan.canary.version)
        with self._canary_lock:
            watch = self._canary.setdefault(key, _CanaryWatch())
            watch.requests += 1
            watch.errors += int(errored)
            if seconds is not None:
                watch.latencies.append(seconds)
            if watch.requests < cfg.canary_min_requests:
                return
            reasons = []
            rate = watch.errors / watch.requests
            if cfg.canary_max_error_rate is not None and rate > cfg.canary_max_error_rate:
                reasons.append(f"error rate {rate:.1%} > {cfg.canary_max_error_rate:.1%}")
            if cfg.canary_max_p95_ms is not None and watch.latencies:
                p95 = float(np.percentile(np.asarray(watch.latencies), 95)) * 1000
                if p95 > cfg.canary_max_p95_ms:
                    reasons.append(f"p95 latency {p95:.0f} ms > {cfg.canary_max_p95_ms:g} ms")
            if not reasons:
                return
            del self._canary[key]
        self._roll_back_canary(plan, f"canary {plan.canary.ref} rolled back by the server's guard after {watch.requests} requests: " + "; ".join(reasons))

    def _roll_back_canary(self, plan: Plan, reason: str) -> None:
        name = plan.live.name
        default = self.project.registry(with_live=False).default_version(name)
        try:
            self.project.store().set_route(name, current_default=default, canary=None, action="canary-rollback", reason=reason, command="mldeploy serve (canary guard)")
        except MldeployError:
            log.exception("canary guard could not record the rollback")
        self.metrics.rollbacks.labels(name, plan.canary.version).inc()
        log.warning(reason)
        self.refresh()
