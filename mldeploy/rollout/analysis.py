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
from mldeploy.rollout.gates import DEFAULT_POLICY, INCONCLUSIVE, GateResult, LiveWindow, Verdict, evaluate, resolve_rules, verdict
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


def _judge(window, given: Mapping[str, float] | None, defaults: Mapping[str, float], gates: tuple[str, ...], evidence: int, needed: int,
           short: str, notes: list[str]) -> list[GateResult]:
    """The gates of one part (canary or shadow) on its fleet window; every one inconclusive when the part
    has less ``evidence`` than ``needed`` (then ``short`` goes into the notes)."""
    bounds = {k: v for k, v in (given or defaults).items() if k in gates and v is not None}
    judged = evaluate(window, bounds)
    if evidence < needed:
        notes.append(f"{short}, fewer than {needed}")
        judged = [GateResult(g.gate, g.bound, g.value, INCONCLUSIVE, pairs=evidence) for g in judged]
    return judged


def canary_under_test(store, model: str, live: str, routed: str | None, asked: str | None = None) -> tuple[str | None, list[str]]:
    """The canary version to judge, and notes on how it was chosen: the one ``asked`` for (``?canary=``),
    else the one the state routes to (``routed``), else the version a rollout controller's pods serve with
    ``serve --serve-version`` (their counts written in the last 30 s)."""
    if asked:
        return asked, []
    if routed is not None:
        return routed, []
    recent = [v for v in store.recent_canaries(model) if v != live]
    if not recent:
        return None, []
    notes = [f"canary {model}@{recent[0]}: served by --serve-version on some replica"]
    if len(recent) > 1:
        notes.append(f"replicas serve several versions by --serve-version ({', '.join(recent)}); judging the newest, "
                     f"{recent[0]} (ask for another with ?canary=VERSION)")
    return recent[0], notes


def analyse(store, model: str, live: str, canary: str | None, shadow: str | None, *, canary_bounds: Mapping[str, float] | None = None,
            shadow_bounds: Mapping[str, float] | None = None, min_requests: int = 20, min_compared: int = 20,
            notes: list[str] | None = None) -> Analysis:
    """Judge the live canary (``canary``: a version of ``model``) and the shadow (``live`` -> ``shadow``,
    versions) of one model."""
    results: list[GateResult] = []
    notes: list[str] = list(notes or ())
    canary_part = shadow_part = None
    if canary is not None:
        window = fleet_window(store, model, canary)
        results += _judge(window, canary_bounds, CANARY_DEFAULTS, CANARY_GATES, window.requests, min_requests,
                          f"canary {model}@{canary}: {window.requests} requests on every replica", notes)
        canary_part = {"version": f"{model}@{canary}", "requests": window.requests, "errors": window.new_errors,
                       "error_rate": window.error_rate, "p95_ms": None if window.new_latency.p95 is None else round(window.new_latency.p95 * 1000, 2)}
    if shadow is not None:
        row = next((r for r in store.shadow_stats(model) if r["live_version"] == live and r["shadow_version"] == shadow), None)
        counts = AgreementCounts.from_row(row) if row else AgreementCounts()
        window = ShadowWindow(counts, int(row["requests"]) if row else 0, int(row["errors"]) if row else 0)
        results += _judge(window, shadow_bounds, SHADOW_DEFAULTS, SHADOW_GATES, window.compared, min_compared,
                          f"shadow {model}@{shadow}: {window.compared} comparisons on every replica", notes)
        shadow_part = {"live": f"{model}@{live}", "shadow": f"{model}@{shadow}", "compared": window.compared, "errors": window.new_errors,
                       "precision": counts.precision, "recall": counts.recall, "drift": counts.drift, "disagreement": counts.disagreement}
    if canary is None and shadow is None:
        notes.append(f"{model} has neither a canary nor a shadow: nothing to judge")
    # A canary without a shadow has no reference to judge its answers' quality against: its errors and
    # latency are what it is judged on, so they may decide (shadow and canary would say REPORT ONLY).
    return Analysis(model, verdict(results, require_quality=shadow is not None), canary_part, shadow_part, notes)


def bounds_from(query: Mapping[str, str], names: tuple[str, ...]) -> dict[str, float]:
    """Gate bounds given as query parameters (``?max_error_rate=0.02``), checked by the same rules as flags
    (:func:`~mldeploy.rollout.gates.resolve_rules`)."""
    from mldeploy.errors import UsageError

    given = {}
    for name in names:
        if name in query:
            try:
                given[name] = float(query[name])
            except ValueError:
                raise UsageError(f"{name}={query[name]!r}: a number") from None
    return resolve_rules(given, policy="none").bounds
