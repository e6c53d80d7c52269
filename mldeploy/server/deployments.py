"""The server's deployments: a thin façade over routing, dispatch, the shadow mirror and the canary guard.

- :mod:`.routing`: the plans (which version is live, shadow, canary) and the watcher that keeps them
  in step with the state store;
- :meth:`Deployments.detect`: one request, dispatched by its plan;
- :mod:`.capture`: which answered requests are kept, and where (the live shadow's work list);
- :mod:`.shadow.mirror`: the live shadow's worker, child process and counters;
- :mod:`.canary_guard`: the live gates on a canary's requests, and its automatic rollback.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from mldeploy.detections import Detections
from mldeploy.errors import MldeployError
from mldeploy.models.base import ModelSpec
from mldeploy.pipeline import run_detector
from mldeploy.project import Project
from mldeploy.server.canary_guard import CanaryGuard
from mldeploy.server.capture import Capturer
from mldeploy.server.config import ServerConfig
from mldeploy.server.metrics import Metrics
from mldeploy.server.routing import Plan, RoutingTable
from mldeploy.server.shadow.mirror import ShadowMirror

log = logging.getLogger("mldeploy.server")


@dataclass(frozen=True)
class Served:
    """One answered request: which version answered by which route, its boxes, and the shadow it is for."""

    model: str
    spec: ModelSpec
    route: str
    detections: Detections
    seconds: float
    shadow: str | None = None  # the shadow version waiting for this request (a live answer only)


class Deployments:
    """Every served model's routing, and the machinery that serves it."""

    def __init__(self, config: ServerConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.project = Project(state_dir=config.state_dir, config_path=config.config_path, _settings=config.settings)
        self.routing = RoutingTable(self.project, config.models, on_change=self._publish, pins=config.serve_versions)
        self.capturer: Capturer | None = None  # opened by start()
        self.mirror: ShadowMirror | None = None
        self._condition: str | None = None  # what is wrong with the state store now (logged once per change)
        self.guard = CanaryGuard(config.canary_bounds, config.canary_min_requests, self._roll_back_canary)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.ready = False

    @property
    def plans(self) -> dict[str, Plan]:
        return self.routing.plans

    # -- start-up and shutdown ---------------------------------------------------------------------
    def start(self) -> None:
        """Apply start-up routing flags, load every version needed, start the watcher and the shadow."""
        from mldeploy.rollout.releases import set_route

        registry = self.project.registry()
        for name in self.config.models:
            registry.require(name)
        state = self.project.store().location
        for name, version in self.config.shadow.items():
            set_route(self.project, name, shadow=version, reason=f"mldeploy serve --shadow {name}={version}")
            log.info("--shadow %s=%s is saved in the state (%s): it stays after this server stops, for every server on it; "
                     "'mldeploy route %s --no-shadow' ends it", name, version, state, name,
                     extra={"model": name, "shadow": version, "state": state})
        for name, (version, weight) in self.config.canary.items():
            set_route(self.project, name, canary=version, weight=weight, reason=f"mldeploy serve --canary {name}={version}:{weight:g}")
            log.info("--canary %s=%s:%g is saved in the state (%s): it stays after this server stops, for every server on it; "
                     "'mldeploy route %s --no-canary' ends it", name, version, weight, state, name,
                     extra={"model": name, "canary": version, "weight": weight, "state": state})
        self.capturer = Capturer(self.config, self.metrics)
        if self.capturer.persistent:
            log.info("capturing %s of requests into %s (at most %g MiB; oldest evicted first)", f"{self.config.capture_rate:.0%}",
                     self.capturer.folder, self.config.capture_max_bytes / 1048576)
        self.mirror = ShadowMirror(self.metrics, self.project.store, self.capturer, self._shadows, self.config.shadow_mode, self.config.max_pixels)
        self.mirror.start()
        self.refresh(force=True)
        self._publisher = threading.Thread(target=self._publish_canary, name="mldeploy-canary", daemon=True)
        self._publisher.start()
        self._watcher = threading.Thread(target=self._watch, name="mldeploy-watch", daemon=True)
        self._watcher.start()
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        if self.mirror is not None:
            self.mirror.stop()
        if self.capturer is not None:
            self.capturer.close()

    def refresh(self, force: bool = False) -> bool:
        return self.routing.refresh(force)

    def _watch(self) -> None:
        for _ in self.project.store().watch(self._stop, self.config.poll_seconds):  # each time the state may have changed
            try:
                self.refresh()
                problem = None
            except Exception as exc:  # deleted, damaged, locked: keep the current plans, retry, say so once
                problem = f"{exc}; keeping the current routing ({self._describe()})"
            self._report(problem or self.mirror.flush())

    def _publish_canary(self) -> None:
        """Every second: this replica's canary counts into the store, and the fleet's canary judged."""
        while not self._stop.wait(1.0):
            plans = self.plans
            canaries = {name: plan.canary.version for name, plan in plans.items() if plan.canary is not None}
            pinned = [name for name, plan in plans.items() if plan.pinned]
            try:
                self.guard.publish(self.project.store(), canaries, heartbeat=pinned)
            except MldeployError as exc:  # the state store is away: the counts wait for the next try
                log.debug("canary counts not published: %s", exc)

    def _describe(self) -> str:
        return ", ".join(f"{name}: {plan.live.ref}" for name, plan in self.plans.items())

    def _report(self, problem: str | None) -> None:
        """Log the state store's condition when it changes, not on every poll."""
        if problem == self._condition:
            return
        if problem is not None:
            log.warning("state store: %s", problem)
        else:
            log.warning("state store: readable again; routing follows it (%s)", self._describe())
        self._condition = problem

    def _publish(self, plans: dict[str, Plan]) -> None:
        self.metrics.live.clear()
        self.metrics.canary_weight.clear()
        for name, plan in plans.items():
            self.metrics.live.labels(name, plan.live.version).set(1)
            if plan.canary is not None:
                self.metrics.canary_weight.labels(name, plan.canary.version).set(plan.weight / 100)

    # -- serving ---------------------------------------------------------------------------------
    def serving(self) -> Iterator[None]:
        """Around each prediction request (see :meth:`ShadowMirror.serving`)."""
        return self.mirror.serving()

    def _shadows(self) -> dict[str, tuple[ModelSpec, ModelSpec]]:
        return {name: (plan.live, plan.shadow) for name, plan in self.plans.items() if plan.shadow is not None}

    def detect(self, name: str, image: np.ndarray, client_id: str) -> Served:
        """Answer one request (called on a worker thread): pick the version and run it."""
        plan = self.plans[name]
        spec, route = plan.choose(client_id)
        try:
            detections, seconds = run_detector(plan.detectors[spec.ref], image)
        except MldeployError as exc:
            if route == "canary":
                self.guard.observe(name, spec.version, None)
            exc.served_by = (spec.version, route)  # for the request counter: which version and route failed
            raise
        self.metrics.inference.labels(name, spec.version, route).observe(seconds)
        if route == "canary":
            self.guard.observe(name, spec.version, seconds)
        shadow = plan.shadow.version if plan.shadow is not None and route == "live" else None
        return Served(name, spec, route, detections, seconds, shadow)

    def capture_task(self, served: Served, data: bytes, request_id: str | None = None) -> Callable[[], None] | None:
        """What to run after the response (a background task) to capture this request, or None."""
        capturer = self.capturer
        if capturer is None or not capturer.wants(served.model, served.shadow):
            return None
        return lambda: capturer.capture(data, served.model, served.spec.version, served.route, served.detections, served.seconds, served.shadow,
                                        request_id)

    def shadow_stats(self, name: str) -> list[dict]:
        """The shadow counters recorded for a model, including those not yet written, each with the
        requests still waiting in this server's capture (``pending``)."""
        with self.capturer.books:  # the counters and the capture's pending list, at one instant
            self.mirror.flush()
            pending = self.capturer.store.pending(name)
        rows = self.project.store().shadow_stats(name)
        for row in rows:
            row["pending"] = pending.get((name, row["live_version"], row["shadow_version"]), 0)
        return rows

    def refresh_metrics(self) -> None:
        """Gauges that are read from the capture, brought up to date for a scrape."""
        if self.mirror is not None:
            with self.capturer.books:
                self.mirror.publish_pending()

    # -- canary guard ----------------------------------------------------------------------------
    def _roll_back_canary(self, model: str, version: str, reason: str) -> None:
        from mldeploy.rollout.releases import set_route

        plan = self.plans.get(model)
        if plan is not None and plan.pinned:  # not ours to roll back: the controller's analysis reads the same verdict
            log.warning("%s; not rolled back here: this replica serves it by --serve-version, and the rollout controller "
                        "ends it (its analysis reads fail)", reason.replace(" rolled back by", " failed at"))
            return
        try:
            done = set_route(self.project, model, canary=None, action="canary-rollback", reason=reason, command="mldeploy serve (canary guard)",
                             if_canary=version.rpartition("@")[2])
            if done is None:  # another replica's guard removed it first: one history row for the fleet
                self.refresh()
                return
        except MldeployError:
            log.exception("canary guard could not record the rollback")
        self.metrics.rollbacks.labels(model, version).inc()
        log.warning(reason)
        self.refresh()
