"""A rehearsal: what ``mldeploy shadow`` and ``mldeploy canary`` do, as library functions.

:func:`prepare` resolves the versions, the images, the labels and the gate bounds; :func:`shadow` and
:func:`canary` replay and return a :class:`Report`, the one typed result that every renderer (rich
tables, JSON, JUnit, HTML) reads. The canary's decision (promote, or roll back and say why) is made
here, not in the command line.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

from mldeploy.capture.replay import RecordedAnswers, captured_inputs, recorded_spec
from mldeploy.compare import DRIFT_IOU
from mldeploy.errors import MldeployError, OutputError, UsageError
from mldeploy.fileio import check_destinations
from mldeploy.models.base import ModelSpec
from mldeploy.models.registry import parse_classes
from mldeploy.pipeline import ImageInput, collect_inputs
from mldeploy.project import Project
from mldeploy.rollout.canary import Ramp, StepResult, parse_steps, run_canary
from mldeploy.rollout.feedback import capture_truths
from mldeploy.rollout.gates import GATES, GateResult, Rules, Verdict, evaluate, resolve_rules, verdict
from mldeploy.rollout.releases import promote, resolve_version
from mldeploy.rollout.shadow import ShadowRecord, ShadowSummary, run_shadow
from mldeploy.rollout.sides import Side, Version
from mldeploy.rollout.pairs import Pair
from mldeploy.rollout.spec import CanarySteps, RehearsalSpec
from mldeploy.store import Change
from mldeploy.truth.run import Truths, read_truths


@dataclass(frozen=True)
class CanaryDecision:
    """What a canary rehearsal did with the live version (or would have, with ``dry_run``)."""

    promoted: bool  # True: the new version went live; False: the old one stays (or is live again)
    target: str  # the ref made (or kept) live
    reason: str
    dry_run: bool
    change: Change | None = None  # the history row written (None on a dry run)


@dataclass
class Report:
    """What every renderer needs: the records, their summary, the gates, and the run's settings."""

    kind: str  # "shadow" or "canary"
    records: Sequence[ShadowRecord]
    summary: ShadowSummary
    gates: list[GateResult]
    settings: dict[str, Any] = field(default_factory=dict)
    on_inconclusive: str = "fail"
    timeline: list[StepResult] | None = None  # a canary's steps, in order
    decision: CanaryDecision | None = None
    unmatched: list[tuple[str, MldeployError]] = field(default_factory=list)  # arguments that matched no image
    wall_seconds: float = 0.0  # the replay, without loading the versions
    load_seconds: float = 0.0  # loading the versions (0 where the engine loads them during the run: Ray)
    truths: Truths | None = None  # the labels both versions were scored against (--labels)

    @property
    def complete(self) -> bool:
        """``records`` holds every image (a long replay keeps its errors and most disagreeing only)."""
        return len(self.records) == self.summary.images

    @property
    def verdict(self) -> Verdict:
        return verdict(self.gates, self.on_inconclusive)

    @property
    def passed(self) -> bool:
        """The gates let the new version through (a pass, or a run with no quality gate: report only)."""
        return self.verdict.ok

    @property
    def input_errors(self) -> bool:
        """Some inputs could not be read, the old version failed on some, or labels were skipped (exit 1
        when the gates pass)."""
        s = self.summary
        return bool(self.unmatched or s.unreadable or s.old_errors or (self.truths is not None and self.truths.problems))


@dataclass
class Rehearsal:
    """What shadow and canary set up the same way before replaying."""

    project: Project
    old_spec: ModelSpec
    new_spec: ModelSpec
    images: list[ImageInput]
    unmatched: list[tuple[str, MldeployError]]
    labels: list[str] | None
    rules: Rules
    drift_iou: float = DRIFT_IOU
    capture: Path | None = None  # the old side is this capture's recorded answers
    truths: Truths | None = None  # ground truth (--labels)
    records: Path | None = None  # every image's row goes to this folder (--records)
    notes: list[str] = field(default_factory=list)  # what the run was judged on, when the user could not know (a capture's labels)

    @property
    def old(self) -> Side:
        if self.capture is not None:
            return RecordedAnswers(self.old_spec)
        return Version(self.old_spec, self.project.load)  # pins checked; loaded once per process, on first use

    @property
    def new(self) -> Side:
        return Version(self.new_spec, self.project.load)

    @property
    def bounds(self) -> dict[str, float]:
        return self.rules.bounds

    def settings(self, iou: float, **extra: Any) -> dict[str, Any]:
        capture = {"capture": str(self.capture)} if self.capture is not None else {}
        if self.truths is not None:
            capture["labels"] = str(self.truths.labels.source)
        if self.records is not None:
            capture["records"] = str(self.records)
        if self.notes:
            capture["notes"] = list(self.notes)
        return {"old": self.old_spec.ref, "new": self.new_spec.ref, "iou": iou, "drift_iou": self.drift_iou, "classes": self.labels,
                "gates": self.rules.policy, "inconclusive": self.rules.on_inconclusive, **capture, **extra}


def prepare(project: Project, spec: RehearsalSpec) -> Rehearsal:
    """Resolve versions, images, labels and gate bounds (the versions load when the engine prepares them).

    An HTML report folder inside an image folder is skipped when collecting images, so a rerun does
    not replay the previous report's pictures. Every report destination is checked here, before any
    image is replayed (and before a canary can promote anything).

    Raises:
        UsageError: no images, or a report destination that cannot be written (over an input image, into
            a folder of other files, a read-only folder).
    """
    c, inputs, reports, labels = spec.comparison, spec.inputs, spec.reports, spec.labels.path
    registry = project.registry()
    new_spec = resolve_version(registry, c.new, c.model)
    capture = Path(inputs.capture) if inputs.capture is not None else None
    truths, notes, flags = None, [], dict(spec.gates.bounds)
    if capture is not None:
        if inputs.paths:
            raise UsageError("give images or --capture, not both")
        if labels is not None:
            raise UsageError("--labels needs image files; a capture's labels are attached to it ('mldeploy capture label DIR --labels FILE')")
        version = c.old.rpartition("@")[2] if c.old else None
        version, images = captured_inputs(capture, new_spec.name, version)
        unmatched: list[tuple[str, MldeployError]] = []
        known = next((s for s in registry.versions(new_spec.name) if s.version == version), None)
        old_spec = recorded_spec(new_spec.name, version, known)
        classes_ = parse_classes(c.classes, *((old_spec, new_spec) if known is not None else (new_spec,)))
        scored = classes_ or list(dict.fromkeys([*old_spec.classes, *new_spec.classes]))
        truths, note = capture_truths(capture, images, scored, spec.labels.min_labeled, spec.labels.label_map, project.settings.label_map)
        notes.append(note)
        refused = [name for name, value in flags.items() if value is not None and GATES[name].truth]
        if truths is None and refused:  # asked for, not yet possible: said, not an error (labels arrive later)
            notes.append(f"{', '.join(GATES[n].flag for n in refused)} not applied until {spec.labels.min_labeled} requests have labels")
            flags = {k: v for k, v in flags.items() if k not in refused}
    rules = resolve_rules(flags, project.settings.gates, spec.gates.policy, spec.gates.on_inconclusive, truth=labels is not None or truths is not None)
    if capture is None:
        if not inputs.paths:
            raise UsageError("no images: give image files or folders, or --capture DIR")
        old_spec = resolve_version(registry, c.old or c.model, c.model)
        classes_ = parse_classes(c.classes, old_spec, new_spec)
        images, unmatched = collect_inputs(inputs.paths, exclude=reports.html)
    if not images:
        raise UsageError("no images to replay: " + "; ".join(f"{arg}: {err}" for arg, err in unmatched))
    if labels is not None:
        scored = classes_ or list(dict.fromkeys([*old_spec.classes, *new_spec.classes]))  # --classes limits the truth too
        truths = read_truths(labels, images, scored, label_map=spec.labels.label_map, project_map=project.settings.label_map, names=spec.labels.names)
    try:  # before the run: a verdict must never be lost to a report that cannot be written
        check_destinations(reports.files, reports.folders, (item.path for item in images if item.uri is None))
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    return Rehearsal(project, old_spec, new_spec, images, unmatched, classes_, rules, c.drift_iou, capture, truths,
                     Path(reports.records) if reports.records is not None else None, notes)


def run(r: Rehearsal, spec: RehearsalSpec, *, on_record: Callable[[ShadowRecord], None] | None = None,
        on_step: Callable[[StepResult], None] | None = None, loading: Callable[[ModelSpec], ContextManager] | None = None) -> Report:
    """The rehearsal ``spec`` asks for, on the engine it names: a shadow, or a canary. ``loading(spec)``:
    a context each version loads in (the command line says ``loading faces@v2 (mtcnn) ...``)."""
    engine = spec.engine.make(r.project)
    if spec.canary is None:
        return shadow(r, engine, iou=spec.comparison.iou, on_record=on_record, loading=loading)
    return canary(r, engine, spec.canary, iou=spec.comparison.iou, on_step=on_step, on_record=on_record, loading=loading)


def _load(engine, sides: Sequence[Side], loading) -> float:
    """Load the versions that run here, one by one inside ``loading(spec)``; the seconds it took."""
    started = time.perf_counter()
    for side in sides:
        show = loading is not None and side.timed and getattr(engine, "loads_here", True)
        with loading(side.spec) if show else contextlib.nullcontext():
            engine.prepare(side)
    return time.perf_counter() - started


def shadow(r: Rehearsal, engine, *, iou: float = 0.5, on_record: Callable[[ShadowRecord], None] | None = None, loading=None) -> Report:
    """Replay every image through both versions on ``engine`` and judge the gates."""
    old, new = r.old, r.new
    load_seconds = _load(engine, (old, new), loading)
    with engine.session():
        run = run_shadow(r.images, old, new, engine=engine, truths=r.truths, on_record=on_record, iou_threshold=iou, drift_iou=r.drift_iou,
                         labels=r.labels)
    settings = r.settings(iou, **engine.settings)
    return Report("shadow", run.records, run.summary, evaluate(run.summary, r.bounds), settings, r.rules.on_inconclusive, unmatched=r.unmatched,
                  wall_seconds=run.wall_seconds, truths=r.truths, load_seconds=load_seconds)


def canary(r: Rehearsal, engine, plan: CanarySteps, *, iou: float = 0.5, on_step: Callable[[StepResult], None] | None = None,
           on_record: Callable[[ShadowRecord], None] | None = None, loading=None) -> Report:
    """Walk the steps of ``plan`` on ``engine``; the first failing one stops the rollout. Then promote the
    new version, or keep (or restore) the old one with a history row naming the failed gates, unless
    ``plan.dry_run``.

    Raises:
        UsageError: bad steps, the same version twice, two different models without a dry run, or no
            step that sent any image to the canary.
    """
    steps, salt, dry_run, command = plan.steps, plan.salt, plan.dry_run, plan.command
    shares = parse_steps(steps)
    if r.old_spec.name != r.new_spec.name and not dry_run:
        raise UsageError(f"{r.old_spec.ref} and {r.new_spec.ref} are different models: only a --dry-run can compare them")
    if r.old_spec.ref == r.new_spec.ref:
        raise UsageError(f"--old and --new are both {r.old_spec.ref}: nothing to roll out")
    if r.old_spec.backend == "recorded" and not dry_run:
        raise UsageError(f"{r.old_spec.ref} answered the capture but is not a version here, so it cannot be kept or restored: add --dry-run")
    old, new = r.old, r.new
    load_seconds = _load(engine, (old, new), loading)
    with engine.session():  # one connection for every step
        run = run_canary(r.images, Pair(old, new, iou, r.drift_iou, r.labels), Ramp(shares, r.bounds, salt, r.rules.on_inconclusive),
                         engine=engine, truths=r.truths, on_step=on_step, on_record=on_record)
    last = run.last_step
    if last is None:
        raise UsageError(f"no step sent any image to the canary ({len(r.images)} images, steps {steps}); add a step of 100 or more images")
    if run.passed:
        what = "passed every step" if run.outcome.status == "pass" else f"{run.outcome.status} (no step failed)"
        caveat = f"; not judged: {run.outcome.caveat}" if run.outcome.caveat else ""
        action, target, reason = "canary-promote", r.new_spec, f"canary {what} ({steps}) on {run.canary_requests} requests{caveat}"
    else:
        action, target, reason = "canary-rollback", r.old_spec, run.failure_reason()
    change = None if dry_run else promote(r.project, target, reason=reason, command=command, force=True, action=action)
    decision = CanaryDecision(run.passed, target.ref, reason, dry_run, change)
    settings = r.settings(iou, steps=list(shares), salt=salt, dry_run=dry_run, **engine.settings)
    return Report("canary", run.records, last.summary, last.gates, settings, r.rules.on_inconclusive, timeline=run.steps, decision=decision,
                  unmatched=r.unmatched, wall_seconds=run.wall_seconds, truths=r.truths, load_seconds=load_seconds)
