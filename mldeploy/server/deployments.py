"""The server's deployments: a thin façade over routing, dispatch, the shadow mirror and the canary guard.

- :mod:`.routing`: the plans (which version is live, shadow, canary) and the watcher that keeps them
  in step with the state store;
- :meth:`Deployments.detect`: one request, dispatched by its plan;
- :mod:`.shadow.mirror`: the live shadow's queue, worker, child process and counters;
- :mod:`.canary_guard`: the live gates on a canary's requests, and its automatic rollback.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterator

import numpy as np

from mldeploy.detections import Detections
from mldeploy.errors import MldeployError
from mldeploy.models.base import ModelSpec
from mldeploy.pipeline import run_detector
from mldeploy.project import Project
from mldeploy.server.canary_guard import CanaryGuard
from mldeploy.server.config import ServerConfig
from mldeploy.server.metrics import Metrics
from mldeploy.server.routing import Plan, RoutingTable
from mldeploy.server.shadow.mirror import ShadowJob, ShadowMirror

log = logging.getLogger("mldeploy.server")


class Deployments:
    """Every served model's routing, and the machinery that serves it."""

    def __init__(self, config: ServerConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.project = Project(state_dir=config.state_dir, config_path=config.config_path)
        self.routing = RoutingTable(self.project, config.models, on_change=self._publish)
        self.mirror = ShadowMirror(metrics, self.project.store, config.shadow_queue, config.shadow_memory_bytes)
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
        for name, version in self.config.shadow.items():
            set_route(self.project, name, shadow=version, reason=f"mldeploy serve --shadow {name}={version}")
        for name, (version, weight) in self.config.canary.items():
            set_route(self.project, name, canary=version, weight=weight, reason=f"mldeploy serve --canary {name}={version}:{weight:g}")
        self.mirror.start()
        self.refresh(force=True)
        self._watcher = threading.Thread(target=self._watch, name="mldeploy-watch", daemon=True)
        self._watcher.start()
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        self.mirror.stop()

    def refresh(self, force: bool = False) -> bool:
        return self.routing.refresh(force)

    def _watch(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.refresh()
                problem = None
            except Exception as exc:  # deleted, damaged, locked: keep the current plans, retry, say so once
                problem = f"{exc}; keeping the current routing ({self._describe()})"
            self._report(problem or self.mirror.flush())

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
                self.metrics.canary_weight.labels(name, plan.canary.version).set(plan.weight)

    # -- serving ---------------------------------------------------------------------------------
    def serving(self) -> Iterator[None]:
        """Around each prediction request (see :meth:`ShadowMirror.serving`)."""
        return self.mirror.serving()

    def detect(self, name: str, image: np.ndarray, client_id: str) -> tuple[ModelSpec, str, Detections, float]:
        """Answer one request (called on a worker thread): pick the version, run it, queue the shadow."""
        plan = self.plans[name]
        spec, route = plan.choose(client_id)
        try:
            detections, seconds = run_detector(plan.detectors[spec.ref], image)
        except MldeployError:
            if route == "canary":
                self.guard.observe(name, spec.version, None)
            raise
        self.metrics.inference.labels(name, spec.version, route).observe(seconds)
        if route == "canary":
            self.guard.observe(name, spec.version, seconds)
        elif plan.shadow is not None:
            self.mirror.submit(ShadowJob(name, spec, plan.shadow, image, detections))
        return spec, route, detections, seconds

    def shadow_stats(self, name: str) -> list[dict]:
        """The shadow counters recorded for a model, including those not yet written."""
        self.mirror.flush()
        return self.project.store().shadow_stats(name)

    # -- canary guard ----------------------------------------------------------------------------
    def _roll_back_canary(self, model: str, version: str, reason: str) -> None:
        from mldeploy.rollout.releases import set_route

        try:
            set_route(self.project, model, canary=None, action="canary-rollback", reason=reason, command="mldeploy serve (canary guard)")
        except MldeployError:
            log.exception("canary guard could not record the rollback")
        self.metrics.rollbacks.labels(model, version).inc()
        log.warning(reason)
        self.refresh()
