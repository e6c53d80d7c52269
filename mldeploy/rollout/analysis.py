"""The verdict an outside controller asks for (Argo Rollouts' analysis, Flagger's webhooks): the live
canary and the live shadow of one model, judged fleet-wide from the state store with the same gates,
the same pass / fail / inconclusive rules and the same verdict as ``mldeploy shadow`` and ``canary``.

The window is everything since the canary (or the shadow) was set: the store keeps the fleet's counts
from then (canary: requests, errors, a latency histogram; shadow: the agreement counts). Too little
evidence (fewer than ``min_requests`` canary requests, fewer than ``min_compared`` shadow comparisons) is
inconclusive, which Argo Rollouts counts as neither success nor failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mldeploy.compare import AgreementCounts
from mldeploy.rollout.gates import DEFAULT_POLICY, GATES, INCONCLUSIVE, PASS, REPORT_ONLY, GateResult, LiveWindow, Verdict, evaluate, verdict
from mldeploy.rollout.latency import LatencyStats
from mldeploy.store.canary_stats import percentile_of

#: Bounds when the caller and the server give none: the canary's errors, and the default policy's quality gates for the shadow.
CANARY_DEFAULTS = {"max_error_rate": 0.01}
SHADOW_DEFAULTS = {name: DEFAULT_POLICY[name] for name in ("min_precision", "min_recall", "max_drift")}
SHADOW_GATES = ("max_disagreement", "min_precision", "min_recall", "min_f1", "min_mean_iou", "max_drift", "max_error_rate")
CANARY_GATES = ("max_error_rate", "max_p95_ms")


def fleet_window(store, model: str, version: str) -> LiveWindow:
    """The canary's requests on every replica, as the state store has them added up."""
    requests, errors, buckets = store.canary_stats(model, version)
    calls = sum(buckets.values())
    return LiveWindow(requests, errors, LatencyStats(calls, percentile_of(buckets, 50), percentile_of(buckets, 95), None))


@dataclass(frozen=True)
class ShadowWindow:
    """A live shadow's fleet counts, with the attributes the quality gates read."""

    agreement: AgreementCounts
    requests: int
    new_errors: int
    recorded: bool = False
    truth: Any = None

    @property
    def compared(self) -> int:
        return self.agreement.images

    @property
    def error_rate(self) -> float | None:
        return self.new_errors / self.requests if self.requests else None


@dataclass
class Analysis:
    model: str
    verdict: Verdict
    canary: dict[str, Any] | None = None
    shadow: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _short(gates: list[GateResult], count: int) -> list[GateResult]:
    """Every gate of a part with too little evidence (``count`` requests or comparisons): inconclusive."""
    return [GateResult(g.gate, g.bound, g.value, INCONCLUSIVE, pairs=count) for g in gates]


def analyse(store, model: str, live: str, canary: str | None, shadow: str | None, *, canary_bounds: Mapping[str, float] | None = None,
            shadow_bounds: Mapping[str, float] | None = None, min_requests: int = 20, min_compared: int = 20) -> Analysis:
    """Judge the live canary (``canary``: a version of ``model``) and the shadow (``live`` -> ``shadow``,
    versions) of one model."""
    results: list[GateResult] = []
    notes: list[str] = []
    canary_part = shadow_part = None
    if canary is not None:
        window = fleet_window(store, model, canary)
        bounds = {k: v for k, v in (canary_bounds or CANARY_DEFAULTS).items() if k in CANARY_GATES and v is not None}
        judged = evaluate(window, bounds)
        if window.requests < min_requests:
            judged = _short(judged, window.requests)
            notes.append(f"canary {model}@{canary}: {window.requests} requests on every replica, fewer than {min_requests}")
        results += judged
        canary_part = {"version": f"{model}@{canary}", "requests": window.requests, "errors": window.new_errors,
                       "error_rate": window.error_rate, "p95_ms": None if window.new_latency.p95 is None else round(window.new_latency.p95 * 1000, 2)}
    if shadow is not None:
        row = next((r for r in store.shadow_stats(model) if r["live_version"] == live and r["shadow_version"] == shadow), None)
        counts = AgreementCounts.from_row(row) if row else AgreementCounts()
        window = ShadowWindow(counts, int(row["requests"]) if row else 0, int(row["errors"]) if row else 0)
        bounds = {k: v for k, v in (shadow_bounds or SHADOW_DEFAULTS).items() if k in SHADOW_GATES and v is not None}
        judged = evaluate(window, bounds)
        if window.compared < min_compared:
            judged = _short(judged, window.compared)
            notes.append(f"shadow {model}@{shadow}: {window.compared} comparisons on every replica, fewer than {min_compared}")
        results += judged
        shadow_part = {"live": f"{model}@{live}", "shadow": f"{model}@{shadow}", "compared": window.compared, "errors": window.new_errors,
                       "precision": counts.precision, "recall": counts.recall, "drift": counts.drift, "disagreement": counts.disagreement}
    if canary is None and shadow is None:
        notes.append(f"{model} has neither a canary nor a shadow: nothing to judge")
    judged = verdict(results)
    if judged.status == REPORT_ONLY and results:
        # A canary without a shadow has no reference to judge its answers' quality against: its errors and
        # latency are what it is judged on here, so they decide (shadow and canary would say REPORT ONLY).
        judged = Verdict(PASS, tuple(g for g in results if g.status == "pass"), tuple(results))
    return Analysis(model, judged, canary_part, shadow_part, notes)


def bounds_from(query: Mapping[str, str], names: tuple[str, ...]) -> dict[str, float]:
    """Gate bounds given as query parameters (``?max_error_rate=0.02``), checked as flags are."""
    from mldeploy.errors import UsageError

    out = {}
    for name in names:
        if name in query:
            try:
                out[name] = float(query[name])
            except ValueError:
                raise UsageError(f"{name}={query[name]!r}: a number") from None
            if GATES[name].share and not 0 <= out[name] <= 1:
                raise UsageError(f"{name}={out[name]:g}: a share from 0 to 1")
    return out
