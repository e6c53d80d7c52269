"""Which version answers, which one shadows, which one is canary: one immutable :class:`Plan` per model.

The state store is the single source of truth (the CLI's ``promote``, ``rollback`` and ``route`` and the
admin endpoints all write to it). :class:`RoutingTable` reads it; when something changed it loads any
version not loaded yet, *then* swaps in new plans. A request takes its plan once, at its start, so a
switch is atomic and a request in flight finishes on the version it started with. Every version that
was ever live while the server ran stays loaded (the load-once cache), so a rollback is instant.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mldeploy.errors import MldeployError, StateError
from mldeploy.models.base import Detector, ModelSpec
from mldeploy.models.registry import Registry
from mldeploy.project import Project
from mldeploy.rollout.canary import bucket
from mldeploy.store import Route

log = logging.getLogger("mldeploy.server")


@dataclass(frozen=True)
class Plan:
    """How one model's requests are served right now. Immutable: replaced, never changed."""

    live: ModelSpec
    shadow: ModelSpec | None = None
    canary: ModelSpec | None = None
    weight: float = 0.0  # percent of clients on the canary
    detectors: Mapping[str, Detector] = field(default_factory=dict, compare=False, repr=False)  # ref -> loaded live/canary
    pinned: bool = False  # the canary is this replica's own (``serve --serve-version``): every request, nothing in the state

    def choose(self, client_id: str) -> tuple[ModelSpec, str]:
        """The version for this client, and its route name. Sticky: a client keeps its side."""
        if self.canary is not None and self.weight > 0 and bucket(client_id, salt=self.live.name) * 100 < self.weight:
            return self.canary, "canary"
        return self.live, "live"

    def line(self) -> str:
        """``faces: live faces@v1, shadow faces@v2, canary off``: for the log."""
        if self.pinned:
            return (f"{self.live.name}: this replica serves {self.canary.ref} (--serve-version), counted as its canary; "
                    f"live in the state: {self.live.ref}")
        canary = f"{self.canary.ref} at {self.weight:g}%" if self.canary else "off"
        return f"{self.live.name}: live {self.live.ref}, shadow {self.shadow.ref if self.shadow else 'off'}, canary {canary}"

    def describe(self) -> dict[str, Any]:
        return {
            "live": self.live.ref,
            "shadow": self.shadow.ref if self.shadow else None,
            "canary": self.canary.ref if self.canary else None,
            "canary_weight": self.weight if self.canary else 0.0,
            "serve_version": self.canary.ref if self.pinned else None,
        }


class RoutingTable:
    """The plans of every served model, kept in step with the state store by :meth:`refresh`."""

    def __init__(self, project: Project, models: list[str], on_change: Callable[[dict[str, Plan]], None] = lambda plans: None,
                 pins: Mapping[str, str] | None = None) -> None:
        self.project = project
        self.models = models
        self.pins = dict(pins or {})  # model -> the version this replica serves whatever the state says (serve --serve-version)
        self.plans: dict[str, Plan] = {}
        self._on_change = on_change
        self._snapshot: tuple | None = None
        self._had_store = False  # the state store existed at the last refresh
        self._lock = threading.Lock()

    def refresh(self, force: bool = False) -> bool:
        """Re-read the store; when it changed, load what is new and swap the plans. True if swapped."""
        with self._lock:
            store = self.project.store()
            exists = store.exists
            if self._had_store and not exists:  # deleted under us: never fall back to the defaults silently
                raise StateError(f"{store.location} disappeared")
            snapshot = store.snapshot()
            self._had_store = exists
            if snapshot == self._snapshot and not force:
                return False
            live, routes = snapshot
            registry = self.project.registry(with_live=False)
            plans = {name: self._plan(registry, name, live, routes.get(name, Route())) for name in self.models}
            self.plans = plans  # one reference swap: a request sees the old plans or the new, never a mix
            self._snapshot = snapshot
        self._on_change(plans)
        log.info("routing: %s", "; ".join(plan.line() for plan in plans.values()))
        return True

    def _plan(self, registry: Registry, name: str, live: dict[str, str], route: Route) -> Plan:
        live_spec = registry.resolve(f"{name}@{live.get(name, registry.default_version(name))}")
        shadow = self._spec(registry, name, route.shadow_version)
        canary = self._spec(registry, name, route.canary_version)
        shadow = None if shadow == live_spec else shadow  # promoted since: nothing left to compare
        canary = None if canary == live_spec else canary
        pinned = self._spec(registry, name, self.pins.get(name))
        if pinned is not None and pinned != live_spec:
            # A rollout controller's canary pod: every request to its version, counted as the canary's for the
            # fleet's verdict; the state's live version is not loaded here (nothing is routed to it).
            return Plan(live_spec, None, pinned, 100.0, pinned=True, detectors={pinned.ref: self.project.load(pinned)})
        # Load before switching (pinned SHA-256s checked first): no request ever waits for a model,
        # and a request uses the detector its plan holds, without touching the load-once cache's lock.
        detectors = {spec.ref: self.project.load(spec) for spec in (live_spec, canary) if spec is not None}
        if shadow is not None:  # loads in the shadow process; its pins are checked here
            self.project.check_pins(shadow)
        return Plan(live_spec, shadow, canary, route.canary_weight if canary else 0.0, detectors)

    @staticmethod
    def _spec(registry: Registry, name: str, version: str | None) -> ModelSpec | None:
        if version is None:
            return None
        try:
            return registry.resolve(f"{name}@{version}")
        except MldeployError as exc:  # e.g. removed from mldeploy.toml: keep serving, say why
            log.warning("ignoring route to %s@%s: %s", name, version, exc)
            return None
