"""Release gates and the verdict they give, offline (a ShadowSummary) and live (a server's LiveWindow).

Each gate has a name (``min_recall``), a flag (``--min-recall``) and a key in ``mldeploy.toml``'s
``[gates]``. Bounds come from the flag, else the project file, else the **default policy**: the bounds
every ``shadow`` and ``canary`` applies when nobody says otherwise (:data:`DEFAULT_POLICY`, with the
reason for each in the README). ``--gates none`` (or ``policy = "none"`` in ``[gates]``) switches the
policy off; then only bounds given explicitly apply, and a run with no quality gate says "report only",
never PASS.

A gate's outcome is ``pass``, ``fail`` or ``inconclusive``. The latency ratio gates are judged on a
90% bootstrap interval of the paired per-image ratio (:mod:`mldeploy.rollout.latency`): inside the
bound is a pass, beyond it a fail, straddling it (or on too few images) inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from mldeploy.errors import EXIT_GATE_FAILED, EXIT_INCONCLUSIVE, ConfigError, UsageError

if TYPE_CHECKING:  # the CLI builds its gate options from GATES at start-up: no NumPy here
    from mldeploy.rollout.latency import LatencyStats, RatioEstimate
    from mldeploy.rollout.shadow import ShadowSummary

PASS, FAIL, INCONCLUSIVE, REPORT_ONLY = "pass", "fail", "inconclusive", "report only"
#: A latency ratio gate on a capture replay: the old version did not run here, so there is no pair to time.
NOT_MEASURED = "not measured"
POLICIES = ("default", "none")
ON_INCONCLUSIVE = ("fail", "pass")


def _mean_iou(summary: ShadowSummary) -> float | None:
    agreement = summary.agreement
    if agreement.matched:
        return agreement.mean_iou
    return 0.0 if agreement.old_boxes else None  # the old version found boxes and none matched: worst case


@dataclass(frozen=True)
class Gate:
    name: str
    kind: str  # "max" or "min"
    metric: Callable[[Any], float | None]
    what: str
    label: str  # a short name for one-line reasons: "error rate 40.0% > 20.0%"
    unit: str = ""  # "%" shows a share as a percentage, "ms" seconds as milliseconds, "x" a ratio, "n" a count
    default: float | None = None  # the default policy's bound
    share: bool = False  # the figure is a share from 0 to 1 (and so must the bound be)
    quality: bool = False  # judges the answers (not speed or errors): a run needs one to PASS
    interval: Callable[[Any], RatioEstimate | None] | None = None  # judged on an interval, not a point
    truth: bool = False  # reads ground truth: needs --labels
    truth_default: float | None = None  # the default policy's bound when there are labels

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def scaled(self, bound: float) -> float:
        """The bound in the figure's own units (``max_p95_ms`` is given in ms, measured in seconds)."""
        return bound / 1000 if self.unit == "ms" else bound

    def show(self, value: float | None, near: float | None = None) -> str:
        """``value`` in the gate's units, with enough decimals to tell it from ``near`` (a bound)."""
        if value is None:
            return "n/a"
        scale, suffix, digits = {"%": (100, "%", 1), "ms": (1000, " ms", 1), "x": (1, "x", 2), "n": (1, "", 0)}.get(self.unit, (1, "", 3))
        if self.unit == "n" and float(value).is_integer():
            return f"{value:g}"
        shown, other = value * scale, None if near is None else near * scale
        while other is not None and digits < 6 and f"{shown:.{digits}f}" == f"{other:.{digits}f}" and shown != other:
            digits += 1
        return f"{shown:.{digits}f}{suffix}"


GATES: dict[str, Gate] = {
    gate.name: gate
    for gate in (
        Gate("max_disagreement", "max", lambda s: s.agreement.disagreement, "share of compared images where the versions disagree",
             "disagreement", "%", share=True, quality=True),
        Gate("min_precision", "min", lambda s: s.agreement.precision, "share of new boxes that match an old box", "precision",
             default=0.95, share=True, quality=True),
        Gate("min_recall", "min", lambda s: s.agreement.recall, "share of old boxes the new version also finds", "recall", default=0.95, share=True, quality=True),
        Gate("min_f1", "min", lambda s: s.agreement.f1, "F1 of precision and recall", "F1", share=True, quality=True),
        Gate("min_mean_iou", "min", _mean_iou, "mean IoU of matched boxes", "mean IoU", share=True, quality=True),
        Gate("max_drift", "max", lambda s: s.agreement.drift, "share of matched boxes that drifted (IoU under --drift-iou)", "drift", "%",
             default=0.10, share=True, quality=True),
        Gate("max_count_change", "max", lambda s: s.agreement.max_relative_count_change, "largest relative change in a label's box count",
             "count change", "%", quality=True),
        Gate("max_latency_ratio", "max", lambda s: s.latency_ratio, "new p50 latency / old p50 latency, per image pair", "p50 ratio", "x",
             default=1.25, interval=lambda s: s.p50_ratio),
        Gate("max_p95_ratio", "max", lambda s: s.p95_ratio, "new p95 latency / old p95 latency, per image pair", "p95 ratio", "x",
             default=1.5, interval=lambda s: s.p95_ratio_estimate),
        Gate("max_p95_ms", "max", lambda s: s.new_latency.p95, "new version's p95 latency", "p95 latency", "ms"),
        Gate("max_error_rate", "max", lambda s: s.error_rate, "share of requests the new version failed on", "error rate", "%", share=True),
        Gate("max_new_errors", "max", lambda s: s.new_errors, "images the new version failed on (the old one did not fail to read)",
             "new errors", "n", default=0),
        Gate("min_images", "min", lambda s: s.compared, "images both versions answered", "images", "n", default=1),
        # Against ground truth (--labels): what agreement cannot tell, an improvement from a regression.
        Gate("min_map", "min", lambda s: s.truth.new.map if s.truth else None, "new version's mAP@0.5:0.95 against the labels", "mAP",
             share=True, quality=True, truth=True),
        Gate("max_map_drop", "max", lambda s: s.truth.map_drop if s.truth else None,
             "fall of mAP@0.5:0.95 from the old version to the new one, against the labels", "mAP drop", share=True, quality=True,
             truth=True, truth_default=0.02),
        Gate("max_recall_drop", "max", lambda s: s.truth.recall_drop if s.truth else None,
             "largest fall in any label's recall (IoU 0.5) from the old version to the new one, against the labels", "recall drop",
             share=True, quality=True, truth=True, truth_default=0.05),
    )
}

#: The bounds a rehearsal applies when nobody says otherwise.
DEFAULT_POLICY = {name: gate.default for name, gate in GATES.items() if gate.default is not None}
#: With labels, the default policy judges answers against the truth instead of against the old version
#: (agreement would call the removal of a false positive a miss): the agreement quality bounds give way
#: to the mAP and per-label recall drops; speed and error bounds stay.
AGREEMENT_QUALITY = ("min_precision", "min_recall", "max_drift")
TRUTH_POLICY = {**{k: v for k, v in DEFAULT_POLICY.items() if k not in AGREEMENT_QUALITY},
                **{name: gate.truth_default for name, gate in GATES.items() if gate.truth_default is not None}}


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    bound: float
    value: float | None
    status: str  # PASS, FAIL or INCONCLUSIVE
    interval: tuple[float, float] | None = None  # the 90% interval a ratio gate was judged on
    pairs: int | None = None  # images it was judged on

    @property
    def name(self) -> str:
        return self.gate.name

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    @property
    def bound_text(self) -> str:
        """``<= 5.0%``, ``>= 0.950``: the bound in the same units as the value."""
        op = "<=" if self.gate.kind == "max" else ">="
        return f"{op} {self.gate.show(self.gate.scaled(self.bound))}"

    def _shown(self) -> str:
        return self.gate.show(self.value, self.gate.scaled(self.bound))

    @property
    def evidence(self) -> str:
        """``90% interval 1.12x-1.31x over 40 images``, for gates judged on an interval."""
        if self.status == NOT_MEASURED:
            return "recorded answers: the old version did not run here"
        if self.interval is None:
            return f"{self.pairs} images, fewer than needed" if self.pairs is not None else ""
        low, high = (self.gate.show(v, self.gate.scaled(self.bound)) for v in self.interval)
        return f"90% interval {low}-{high} over {self.pairs} images"

    @property
    def message(self) -> str:
        text = f"{self.gate.flag}: {self._shown()} (must be {self.bound_text})"
        if self.status == INCONCLUSIVE:
            return f"{text}: inconclusive, {self.evidence or 'nothing to measure'}"
        return f"{text}; {self.evidence}" if self.evidence else text

    @property
    def short(self) -> str:
        """``error rate 40.0% > 20.0%``: for a reason in the history."""
        op = {PASS: "<=" if self.gate.kind == "max" else ">=", FAIL: ">" if self.gate.kind == "max" else "<"}.get(self.status, "vs")
        return f"{self.gate.label} {self._shown()} {op} {self.bound_text.split(' ', 1)[1]}"


@dataclass(frozen=True)
class LiveWindow:
    """What a server's canary guard has seen of a canary: the figures the live gates read.

    It answers the same attribute names as a ShadowSummary, so :func:`evaluate` judges both.
    """

    requests: int
    new_errors: int
    new_latency: "LatencyStats"
    recorded: bool = False  # a ShadowSummary's attribute: a live window's latencies are all measured here

    @property
    def error_rate(self) -> float | None:
        return self.new_errors / self.requests if self.requests else None

    @property
    def compared(self) -> int:
        return self.requests - self.new_errors



@dataclass(frozen=True)
class Rules:
    """What a rehearsal is judged by: the bounds, and what an inconclusive gate means at the end."""

    bounds: dict[str, float]
    on_inconclusive: str = "fail"
    policy: str = "default"


def resolve_bounds(flags: Mapping[str, float | None], project: Mapping[str, Any] | None = None, policy: str | None = None,
                   truth: bool = False) -> dict[str, float]:
    """Flag, else project file, else the policy's default, for each gate that ends up with a bound."""
    return resolve_rules(flags, project, policy, truth=truth).bounds


def _choice(flag: str | None, flag_name: str, setting: str | None, setting_name: str, choices: tuple[str, ...]) -> str:
    """The flag's value, else the project file's, else the first choice; checked, naming where it came from."""
    value, where = (flag, flag_name) if flag else (setting, setting_name) if setting is not None else (choices[0], "")
    if value not in choices:
        raise UsageError(f"{where} {value!r}: choose {' or '.join(choices)}")
    return value


def resolve_rules(flags: Mapping[str, float | None], project: Mapping[str, Any] | None = None, policy: str | None = None,
                  on_inconclusive: str | None = None, truth: bool = False) -> Rules:
    """The bounds and settings of a rehearsal: flags win over ``[gates]``, which wins over the policy
    (:data:`TRUTH_POLICY` when the rehearsal has labels, ``truth``)."""
    project = dict(project or {})
    settings = {key: project.pop(key) for key in ("policy", "inconclusive") if key in project}
    unknown = set(project) - set(GATES)
    if unknown:
        raise ConfigError(f"[gates]: unknown gate {sorted(unknown)[0]!r} (known: policy, inconclusive, {', '.join(GATES)})")
    policy = _choice(policy, "--gates", settings.get("policy"), "[gates] policy", POLICIES)
    on_inconclusive = _choice(on_inconclusive, "--inconclusive", settings.get("inconclusive"), "[gates] inconclusive", ON_INCONCLUSIVE)
    defaults = (TRUTH_POLICY if truth else DEFAULT_POLICY) if policy == "default" else {}
    bounds: dict[str, float] = {}
    for name, gate in GATES.items():
        value = flags.get(name)
        if value is None:
            value = project.get(name, defaults.get(name))
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"[gates] {name} must be a number, not {value!r}")
        where = gate.flag if flags.get(name) is not None else f"[gates] {name}"
        if gate.truth and not truth:
            if flags.get(name) is not None:
                raise UsageError(f"{gate.flag} judges against ground truth: add --labels FILE")
            continue  # a [gates] bound on truth applies to runs with labels
        if gate.share and not 0 <= value <= 1:
            raise UsageError(f"{where} {value:g}: must be a share from 0 to 1 (0.95 means 95%)")
        if value < 0:
            raise UsageError(f"{where} {value:g}: must not be negative")
        bounds[name] = float(value)
    return Rules(bounds, on_inconclusive, policy)


def _judge(gate: Gate, summary: Any, bound: float) -> GateResult:
    value = gate.metric(summary)
    limit = gate.scaled(bound)
    beyond = (lambda v: v > limit + 1e-12) if gate.kind == "max" else (lambda v: v < limit - 1e-12)
    if gate.interval is not None and summary.recorded:
        return GateResult(gate, bound, None, NOT_MEASURED)
    if gate.interval is not None:  # latency ratios: a ShadowSummary's paired evidence (a live window has none)
        estimate = gate.interval(summary)
        if estimate is None:
            return GateResult(gate, bound, value, INCONCLUSIVE, pairs=len(summary.latency_pairs))
        if not estimate.conclusive:
            return GateResult(gate, bound, value, INCONCLUSIVE, pairs=estimate.pairs)
        if gate.kind == "max" and estimate.negligible:  # under the floor: noise on a fast model, not a slowdown
            return GateResult(gate, bound, value, PASS, (estimate.low, estimate.high), estimate.pairs)
        low, high = (estimate.low, estimate.high) if gate.kind == "max" else (estimate.high, estimate.low)
        status = FAIL if beyond(low) else PASS if not beyond(high) else INCONCLUSIVE
        return GateResult(gate, bound, value, status, (estimate.low, estimate.high), estimate.pairs)
    if value is None:  # nothing to measure (no boxes at all, nobody answered): min_images and errors decide
        return GateResult(gate, bound, None, PASS)
    return GateResult(gate, bound, value, FAIL if beyond(value) else PASS)


def evaluate(summary: ShadowSummary | LiveWindow, bounds: Mapping[str, float]) -> list[GateResult]:
    """Judge every bound, in the order of :data:`GATES`."""
    return [_judge(GATES[name], summary, bounds[name]) for name in GATES if name in bounds]


def _flags(gates) -> str:
    return ", ".join(g.gate.flag for g in gates)


@dataclass(frozen=True)
class Verdict:
    """What the gates add up to, and why: the one verdict every report (the headline, JSON, JUnit, HTML,
    the history's reason) reads.

    ``status``: ``pass``, ``fail``, ``inconclusive`` or ``report only``. ``deciding``: the gates that
    decided it: the failed ones, else the inconclusive ones, else (a pass) every gate that passed.
    ``unjudged``: inconclusive gates that did not decide it: let through by ``--inconclusive pass`` on a
    pass or report only, or beside the failed gates on a fail.
    """

    status: str
    deciding: tuple[GateResult, ...]
    ran: tuple[GateResult, ...]
    unjudged: tuple[GateResult, ...] = ()

    @property
    def ok(self) -> bool:
        """The rehearsal may go on (exit 0, promote)."""
        return self.status in (PASS, REPORT_ONLY)

    @property
    def let_through(self) -> tuple[GateResult, ...]:
        """Inconclusive gates that ``--inconclusive pass`` let through (a pass, or report only)."""
        return self.unjudged if self.ok else ()

    @property
    def not_measured(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.ran if g.status == NOT_MEASURED)

    @property
    def caveat(self) -> str:
        """``2 gates inconclusive, let through by --inconclusive pass: --max-latency-ratio, --max-p95-ratio``,
        or ``""``: what a pass did not judge."""
        if not self.let_through:
            return ""
        n = len(self.let_through)
        return f"{n} gate{'s' if n != 1 else ''} inconclusive, let through by --inconclusive pass: {_flags(self.let_through)}"

    @property
    def headline(self) -> str:
        """One line, first word the status: ``FAIL: --min-recall, --max-p95-ratio``; a pass names what it
        did not judge: ``PASS (2 gates inconclusive, let through by --inconclusive pass: ...): 5 gates passed``."""
        caveat = f" ({self.caveat})" if self.caveat else ""
        if self.status == REPORT_ONLY:
            return f"REPORT ONLY{caveat}: no quality gate ran (gates: {_flags(self.ran) or 'none'})"
        if self.status == PASS:
            measured = [g for g in self.ran if g.status != NOT_MEASURED]
            passed = sum(g.status == PASS for g in measured)
            what = (f"all {passed} gates{' measured' if self.not_measured else ''} passed" if passed == len(measured)
                    else f"{passed} of {len(measured)} gates passed")
            unmeasured = f" ({len(self.not_measured)} not measured)" if self.not_measured else ""
            return f"PASS{caveat}: {what}{unmeasured}"
        also = f" (also inconclusive: {_flags(self.unjudged)})" if self.unjudged else ""
        return f"{self.status.upper()}: {_flags(self.deciding)}{also}"


def verdict(results: list[GateResult], on_inconclusive: str = "fail", require_quality: bool = True) -> Verdict:
    """What ``results`` add up to. ``require_quality``: a run with no gate that judges the answers says
    REPORT ONLY, never PASS (a live canary judged on its errors and latency alone may pass)."""
    results = list(results)
    inconclusive = tuple(g for g in results if g.status == INCONCLUSIVE)
    failed = tuple(g for g in results if g.status == FAIL)
    if failed:
        return Verdict(FAIL, failed, tuple(results), inconclusive)
    if inconclusive and on_inconclusive == "fail":
        return Verdict(INCONCLUSIVE, inconclusive, tuple(results))
    if not (any(g.gate.quality for g in results) if require_quality else results):
        return Verdict(REPORT_ONLY, (), tuple(results), inconclusive)
    return Verdict(PASS, tuple(g for g in results if g.status == PASS), tuple(results), inconclusive)


def exit_code(result: Any) -> int:
    """The exit code of any run's result (a rehearsal's Report, eval's EvalRun, detect's DetectRun), from
    the result alone: 3 when a gate failed, 6 when the verdict is inconclusive, 1 when inputs failed or
    label entries were skipped, else 0."""
    if result.verdict is not None and not result.verdict.ok:
        return EXIT_GATE_FAILED if result.verdict.status == FAIL else EXIT_INCONCLUSIVE
    return 1 if result.input_errors else 0
