"""Canary rehearsal: replay an image set as traffic with a growing share routed to the new version.

Routing is deterministic and sticky: each image gets a bucket in [0, 1) from a hash of its path
(relative to the folder it came from) and an optional salt, and goes to the new version while the
step's share is above its bucket. Shares only grow, so an image that reached the canary at 5% stays on
it at 25%, the way a real router keeps a user on the version it first served them; and a rerun routes
every image the same way.

At each step the gates are checked on the canary's requests so far, against what the old version
answers for the same images. The first failing step stops the rollout; later steps do not run, and
the images they would have sent to the canary are never run through it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from mldeploy.errors import UsageError
from mldeploy.pipeline import ImageInput, ImageSubset
from mldeploy.rollout.gates import FAIL, INCONCLUSIVE, GateResult, Verdict, evaluate, verdict
from mldeploy.rollout.pairs import Pair
from mldeploy.rollout.shadow import ShadowMetric, ShadowRecord, ShadowSummary

DEFAULT_STEPS = (5, 25, 50, 100)


def parse_steps(text: str) -> tuple[float, ...]:
    """``"5,25,50,100"`` -> ``(5.0, 25.0, 50.0, 100.0)``: increasing percentages in (0, 100]."""
    try:
        steps = tuple(float(part.strip().rstrip("%")) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--steps {text!r}: write percentages separated by commas, e.g. 5,25,50,100") from None
    if not steps:
        raise UsageError("--steps is empty: give at least one percentage, e.g. 100")
    if any(not 0 < s <= 100 for s in steps):
        raise UsageError(f"--steps {text!r}: every step must be above 0 and at most 100")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise UsageError(f"--steps {text!r}: steps must increase")
    return steps


def routing_key(item: ImageInput) -> str:
    """What the router hashes: the image's name in its set (:attr:`ImageInput.key`)."""
    return item.key


def bucket(key: str, salt: str = "") -> float:
    """Stable position of ``key`` in [0, 1); the same on every machine and every run."""
    digest = hashlib.sha256(f"{salt}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class StepResult:
    """One step of the rollout: ``share`` percent of the traffic on the new version.

    ``verdict`` is the gates' verdict on the canary's requests so far (pass, fail, inconclusive, report
    only), or ``no traffic`` / ``not run``. An inconclusive step keeps ramping: the next step brings
    more evidence.
    """

    share: float
    requests: int
    canary_requests: int = 0
    summary: ShadowSummary | None = None
    gates: list[GateResult] = field(default_factory=list)
    verdict: str = "not run"

    @property
    def failed_gates(self) -> list[GateResult]:
        return [g for g in self.gates if g.failed]

    @property
    def inconclusive_gates(self) -> list[GateResult]:
        return [g for g in self.gates if g.status == INCONCLUSIVE]


@dataclass
class CanaryRun:
    old: str
    new: str
    steps: list[StepResult]
    records: list[ShadowRecord]  # those the streaming summary kept (see ShadowMetric), in image order
    outcome: Verdict | None  # the verdict of the last step that ran (None: no step sent any traffic)
    wall_seconds: float = 0.0
    canary_requests: int = 0  # requests the new version saw, over every step that ran

    @property
    def passed(self) -> bool:
        return self.outcome is not None and self.outcome.ok

    @property
    def failed_step(self) -> StepResult | None:
        return next((step for step in self.steps if step.verdict == FAIL), None)

    @property
    def last_step(self) -> StepResult | None:
        return next((step for step in reversed(self.steps) if step.summary is not None), None)

    def failure_reason(self) -> str:
        if self.outcome is None:
            return "no step sent any traffic to the new version"
        step = self.failed_step or self.last_step
        if self.outcome.ok:
            return ""
        gates = "; ".join(g.message for g in self.outcome.deciding)
        what = "failed" if self.outcome.status == FAIL else "was inconclusive"
        return f"canary of {self.new} {what} at {step.share:g}% ({step.canary_requests} requests): {gates}"


@dataclass(frozen=True)
class Ramp:
    """How a canary ramps and is judged: the steps (percentages), the gate bounds, the router's salt, and
    what an inconclusive gate means at the last step."""

    steps: Sequence[float]
    bounds: Mapping[str, float]
    salt: str = ""
    on_inconclusive: str = "fail"


def run_canary(inputs: Sequence[ImageInput], pair: Pair, ramp: Ramp, *, engine=None, truths=None, on_step=None, on_record=None) -> CanaryRun:
    """Walk the steps, stopping at the first whose gates fail. ``on_step(step)`` after each step,
    ``on_record(record)`` after each image the canary saw. Each step's new slice of buckets is replayed
    by ``engine`` (default: the local one).

    The outcome is the verdict of the last step that ran, with ``ramp.on_inconclusive`` deciding what an
    inconclusive gate means there (earlier steps only ever stop on a failure).
    """
    from mldeploy.rollout.engines.local import LocalEngine

    started = time.perf_counter()
    engine = engine if engine is not None else LocalEngine()
    # Buckets and the order they put the images in, as two arrays (16 bytes an image, not a tuple each).
    buckets = np.fromiter((bucket(routing_key(item), ramp.salt) for item in inputs), dtype=np.float64, count=len(inputs))
    order = np.argsort(buckets, kind="stable")
    buckets = buckets[order]
    routed = ImageSubset(inputs, order)
    results = [StepResult(share, len(routed)) for share in ramp.steps]
    metric = ShadowMetric(pair.old.spec.ref, pair.new.spec.ref, pair.iou_threshold, pair.drift_iou, recorded=pair.recorded, truths=truths)
    position = 0
    outcome = None
    for step in results:
        end = max(position, int(np.searchsorted(buckets, step.share / 100, side="left")))
        for record in engine.replay(pair, ImageSubset(routed, range(position, end)), position):  # this step's new slice of buckets
            metric.update(record)
            if on_record is not None:
                on_record(record)
        position = end
        step.canary_requests = position
        if position == 0:
            step.verdict = "no traffic"
        else:
            step.summary = metric.compute()
            step.gates = evaluate(step.summary, ramp.bounds)
            outcome = verdict(step.gates, ramp.on_inconclusive)
            step.verdict = verdict(step.gates, "fail").status  # a step shows what it knows; only a failure stops
        if on_step is not None:
            on_step(step)
        if step.verdict == FAIL:
            break
    return CanaryRun(pair.old.spec.ref, pair.new.spec.ref, results, metric.records, outcome, time.perf_counter() - started, position)
