"""Release gates: bounds on a :class:`~mldeploy.rollout.shadow.ShadowSummary` that a CI job enforces,
and on the live window a server's canary guard keeps (:class:`LiveWindow`): one table, one evaluation.

Each gate has a name (``max_disagreement``), a command-line flag (``--max-disagreement``) and a key in
``mldeploy.toml``'s ``[gates]`` table. Bounds come from the flag, else the project file, else the
default here; only ``max_new_errors`` (0) and ``min_images`` (1) are on by default, so a new version
that crashes, or a run that compared nothing, never passes quietly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

from mldeploy.errors import ConfigError, UsageError

if TYPE_CHECKING:  # the CLI builds its gate options from GATES at start-up: no NumPy here
    from mldeploy.rollout.shadow import LatencyStats, ShadowSummary


def _mean_iou(summary: ShadowSummary) -> float | None:
    agreement = summary.agreement
    if agreement.matched:
        return agreement.mean_iou
    return 0.0 if agreement.old_boxes else None  # the old version found boxes and none matched: worst case


@dataclass(frozen=True)
class Gate:
    name: str
    kind: str  # "max" or "min"
    metric: Callable[[ShadowSummary], float | None]
    what: str
    label: str  # a short name for one-line reasons: "error rate 40.0% > 20.0%"
    unit: str = ""  # "%" shows a share as a percentage, "ms" seconds as milliseconds, "x" a ratio
    default: float | None = None
    share: bool = False  # the figure is a share from 0 to 1 (and so must the bound be)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def show(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        if self.unit == "%":
            return f"{value * 100:.1f}%"
        if self.unit == "ms":
            return f"{value * 1000:.1f} ms"
        if self.unit == "x":
            return f"{value:.2f}x"
        if self.unit == "n":
            return f"{value:g}"
        return f"{value:.3f}"


GATES: dict[str, Gate] = {
    gate.name: gate
    for gate in (
        Gate("max_disagreement", "max", lambda s: s.agreement.disagreement, "share of compared images where the versions disagree",
             "disagreement", "%", share=True),
        Gate("min_precision", "min", lambda s: s.agreement.precision, "share of new boxes that match an old box", "precision", share=True),
        Gate("min_recall", "min", lambda s: s.agreement.recall, "share of old boxes the new version also finds", "recall", share=True),
        Gate("min_f1", "min", lambda s: s.agreement.f1, "F1 of precision and recall", "F1", share=True),
        Gate("min_mean_iou", "min", _mean_iou, "mean IoU of matched boxes (catches drifting boxes)", "mean IoU", share=True),
        Gate("max_count_change", "max", lambda s: s.agreement.max_relative_count_change, "largest relative change in a label's box count",
             "count change", "%"),
        Gate("max_latency_ratio", "max", lambda s: s.latency_ratio, "new p50 latency / old p50 latency", "p50 ratio", "x"),
        Gate("max_p95_ms", "max", lambda s: s.new_latency.p95, "new version's p95 latency", "p95 latency", "ms"),
        Gate("max_error_rate", "max", lambda s: s.error_rate, "share of requests the new version failed on", "error rate", "%", share=True),
        Gate("max_new_errors", "max", lambda s: s.new_errors, "images the new version failed on (the old one did not fail to read)",
             "new errors", "n", 0),
        Gate("min_images", "min", lambda s: s.compared, "images both versions answered", "images", "n", 1),
    )
}


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    bound: float
    value: float | None
    passed: bool

    @property
    def name(self) -> str:
        return self.gate.name

    @property
    def bound_text(self) -> str:
        """``<= 5.0%``, ``>= 0.950``: the bound in the same units as the value."""
        op = "<=" if self.gate.kind == "max" else ">="
        return f"{op} {self.gate.show(self.bound / 1000 if self.gate.unit == 'ms' else self.bound)}"

    @property
    def message(self) -> str:
        return f"{self.gate.flag}: {self.gate.show(self.value)} (must be {self.bound_text})"

    @property
    def short(self) -> str:
        """``error rate 40.0% > 20.0%``: for a reason in the history."""
        op = (">" if self.gate.kind == "max" else "<") if not self.passed else ("<=" if self.gate.kind == "max" else ">=")
        return f"{self.gate.label} {self.gate.show(self.value)} {op} {self.bound_text.split(' ', 1)[1]}"


@dataclass(frozen=True)
class LiveWindow:
    """What a server's canary guard has seen of a canary: the figures the live gates read.

    It answers the same attribute names as a ShadowSummary, so :func:`evaluate` judges both.
    """

    requests: int
    new_errors: int
    new_latency: "LatencyStats"

    @property
    def error_rate(self) -> float | None:
        return self.new_errors / self.requests if self.requests else None

    @property
    def compared(self) -> int:
        return self.requests - self.new_errors


#: The gates a live canary guard can apply (what a server sees without running the old version).
LIVE_GATES = ("max_error_rate", "max_p95_ms", "max_new_errors")


def resolve_bounds(flags: Mapping[str, float | None], project: Mapping[str, float] | None = None) -> dict[str, float]:
    """Flag, else project file, else default, for each gate that ends up with a bound."""
    project = dict(project or {})
    unknown = set(project) - set(GATES)
    if unknown:
        raise ConfigError(f"[gates]: unknown gate {sorted(unknown)[0]!r} (known: {', '.join(GATES)})")
    bounds: dict[str, float] = {}
    for name, gate in GATES.items():
        value = flags.get(name)
        if value is None:
            value = project.get(name, gate.default)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"[gates] {name} must be a number, not {value!r}")
        where = gate.flag if flags.get(name) is not None else f"[gates] {name}"
        if gate.share and not 0 <= value <= 1:
            raise UsageError(f"{where} {value:g}: must be a share from 0 to 1 (0.95 means 95%)")
        if value < 0:
            raise UsageError(f"{where} {value:g}: must not be negative")
        bounds[name] = float(value)
    return bounds


def evaluate(summary: ShadowSummary | LiveWindow, bounds: Mapping[str, float]) -> list[GateResult]:
    """Check every bound. A figure with nothing to measure (mean IoU when neither version found a box,
    a latency ratio when a version never answered) passes as "n/a": ``min_images`` and
    ``max_new_errors`` are what stop a run with no evidence."""
    results = []
    for name, bound in bounds.items():
        gate = GATES[name]
        value = gate.metric(summary)
        scaled = bound / 1000 if gate.unit == "ms" else bound
        if value is None:
            passed = True
        elif gate.kind == "max":
            passed = value <= scaled + 1e-12
        else:
            passed = value >= scaled - 1e-12
        results.append(GateResult(gate, bound, value, passed))
    return results
