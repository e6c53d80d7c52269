"""A rehearsal: what ``mldeploy shadow`` and ``mldeploy canary`` do, as library functions.

:func:`prepare` resolves the versions, the images, the labels and the gate bounds; :func:`shadow` and
:func:`canary` replay and return a :class:`Report`, the one typed result that every renderer (rich
tables, JSON, JUnit, HTML) reads. The canary's decision (promote, or roll back and say why) is made
here, not in the command line.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mldeploy.capture.replay import RecordedAnswers, captured_inputs, recorded_spec
from mldeploy.compare import DRIFT_IOU
from mldeploy.errors import MldeployError, OutputError, UsageError
from mldeploy.fileio import check_destinations
from mldeploy.models.base import Detector, ModelSpec
from mldeploy.models.registry import DEFAULT_MODEL, parse_classes
from mldeploy.pipeline import ImageInput, collect_inputs
from mldeploy.project import Project
from mldeploy.rollout.canary import StepResult, parse_steps, run_canary
from mldeploy.rollout.gates import GateResult, Rules, Verdict, evaluate, resolve_rules, verdict
from mldeploy.rollout.ray_engine import RayOptions
from mldeploy.rollout.releases import promote, resolve_version
from mldeploy.rollout.shadow import ShadowRecord, ShadowSummary, run_shadow
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
    wall_seconds: float = 0.0
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

    @property
    def old(self) -> Detector:
        if self.capture is not None:
            return RecordedAnswers(self.old_spec)
        return self.project.load(self.old_spec)  # pins checked; loaded once per process, on first use

    @property
    def new(self) -> Detector:
        return self.project.load(self.new_spec)

    @property
    def bounds(self) -> dict[str, float]:
        return self.rules.bounds

    def settings(self, iou: float, **extra: Any) -> dict[str, Any]:
        capture = {"capture": str(self.capture)} if self.capture is not None else {}
        if self.truths is not None:
            capture["labels"] = str(self.truths.labels.source)
        if self.records is not None:
            capture["records"] = str(self.records)
        return {"old": self.old_spec.ref, "new": self.new_spec.ref, "iou": iou, "drift_iou": self.drift_iou, "classes": self.labels,
                "gates": self.rules.policy, "inconclusive": self.rules.on_inconclusive, **capture, **extra}


def _on_ray(r: Rehearsal, ray: RayOptions):
    """A connection to the Ray cluster for this rehearsal, after the check that must come first: the pins
    of the versions that will run (one line here, not an error in every actor)."""
    from mldeploy.rollout.ray_engine import session

    if r.capture is None:  # a capture's old answers are recorded: that version does not run
        r.project.check_pins(r.old_spec)
    r.project.check_pins(r.new_spec)
    return session(ray)


@dataclass(frozen=True)
class _Named:
    """A version the canary engine only names (on Ray, the actors load and run it)."""

    spec: ModelSpec


def prepare(project: Project, paths: Sequence[str], new: str, *, old: str | None = None, model: str = DEFAULT_MODEL,
            classes: str | None = None, gate_flags: Mapping[str, float | None] | None = None, policy: str | None = None,
            on_inconclusive: str | None = None, drift_iou: float = DRIFT_IOU,
            outputs: Sequence[Path | None] = (), html: Path | None = None, records: Path | None = None, capture: Path | None = None,
            labels: Path | None = None, label_map: str | None = None, names: Path | None = None) -> Rehearsal:
    """Resolve versions, images, labels and gate bounds (the versions load when first used).

    An HTML report folder inside an image folder is skipped when collecting images, so a rerun does
    not replay the previous report's pictures. Every report destination is checked here, before any
    image is replayed (and before a canary can promote anything).

    Raises:
        UsageError: no images, or a report destination that cannot be written (over an input image, into
            a folder of other files, a read-only folder).
    """
    registry = project.registry()
    new_spec = resolve_version(registry, new, model)
    rules = resolve_rules(gate_flags or {}, project.gate_defaults(), policy, on_inconclusive, truth=labels is not None)
    if capture is not None:
        if paths:
            raise UsageError("give images or --capture, not both")
        if labels is not None:
            raise UsageError("--labels needs image files: captured requests have no labels (the live answers are the reference)")
        version = old.rpartition("@")[2] if old else None
        version, images = captured_inputs(Path(capture), new_spec.name, version)
        unmatched: list[tuple[str, MldeployError]] = []
        known = next((s for s in registry.versions(new_spec.name) if s.version == version), None)
        old_spec = recorded_spec(new_spec.name, version, known)
        classes_ = parse_classes(classes, *((old_spec, new_spec) if known is not None else (new_spec,)))
    else:
        if not paths:
            raise UsageError("no images: give image files or folders, or --capture DIR")
        old_spec = resolve_version(registry, old or model, model)
        classes_ = parse_classes(classes, old_spec, new_spec)
        images, unmatched = collect_inputs(paths, exclude=html)
    if not images:
        raise UsageError("no images to replay: " + "; ".join(f"{arg}: {err}" for arg, err in unmatched))
    truths = None
    if labels is not None:
        scored = classes_ or list(dict.fromkeys([*old_spec.classes, *new_spec.classes]))  # --classes limits the truth too
        truths = read_truths(labels, images, scored, label_map=label_map, project_map=project.label_map(), names=names)
    try:  # before the run: a verdict must never be lost to a report that cannot be written
        check_destinations(outputs, ((html, "--html"), (records, "--records")), (item.path for item in images if item.uri is None))
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    return Rehearsal(project, old_spec, new_spec, images, unmatched, classes_, rules, drift_iou, Path(capture) if capture is not None else None, truths,
                     Path(records) if records is not None else None)


def shadow(r: Rehearsal, *, iou: float = 0.5, workers: int = 1, on_record: Callable[[ShadowRecord], None] | None = None,
           ray: RayOptions | None = None) -> Report:
    """Replay every image through both versions and judge the gates; with ``ray``, on a Ray cluster."""
    if ray is not None:
        from mldeploy.rollout.ray_engine import run_shadow_ray

        with _on_ray(r, ray):
            run = run_shadow_ray(r.images, r.project, r.old_spec.ref, r.new_spec.ref, options=ray, iou_threshold=iou, drift_iou=r.drift_iou,
                                 labels=r.labels, truths=r.truths, on_record=on_record, recorded=r.capture is not None)
        engine = {"engine": "ray", "address": ray.address or "local"}
    else:
        run = run_shadow(r.images, r.old, r.new, iou_threshold=iou, drift_iou=r.drift_iou, labels=r.labels, workers=workers, on_record=on_record,
                         truths=r.truths)
        engine = {}
    return Report("shadow", run.records, run.summary, evaluate(run.summary, r.bounds), r.settings(iou, workers=workers, **engine),
                  r.rules.on_inconclusive, unmatched=r.unmatched, wall_seconds=run.wall_seconds, truths=r.truths)


def canary(r: Rehearsal, *, steps: str, salt: str = "", dry_run: bool = False, iou: float = 0.5, workers: int = 1, command: str = "",
           on_step: Callable[[StepResult], None] | None = None, on_record: Callable[[ShadowRecord], None] | None = None,
           ray: RayOptions | None = None) -> Report:
    """Walk the steps; the first failing one stops the rollout. Then promote the new version, or keep
    (or restore) the old one with a history row naming the failed gates, unless ``dry_run``.

    Raises:
        UsageError: bad steps, the same version twice, two different models without ``dry_run``, or no
            step that sent any image to the canary.
    """
    shares = parse_steps(steps)
    if r.old_spec.name != r.new_spec.name and not dry_run:
        raise UsageError(f"{r.old_spec.ref} and {r.new_spec.ref} are different models: only a --dry-run can compare them")
    if r.old_spec.ref == r.new_spec.ref:
        raise UsageError(f"--old and --new are both {r.old_spec.ref}: nothing to roll out")
    if r.old_spec.backend == "recorded" and not dry_run:
        raise UsageError(f"{r.old_spec.ref} answered the capture but is not a version here, so it cannot be kept or restored: add --dry-run")
    replay_slice, engine, connection = None, {}, contextlib.nullcontext()
    if ray is not None:  # each step replays its new slice of buckets on the cluster; the gates are judged here, on the running totals
        from mldeploy.rollout.ray_engine import replay_ray

        connection = _on_ray(r, ray)  # one connection for every step

        def replay_slice(items, start):
            if not items:
                return iter(())
            return replay_ray(items, r.project, r.old_spec.ref, r.new_spec.ref, options=ray, iou_threshold=iou, drift_iou=r.drift_iou,
                              labels=r.labels, offset=start, recorded=r.capture is not None)

        engine = {"engine": "ray", "address": ray.address or "local"}
    old, new = (r.old, r.new) if ray is None else (r.old if r.capture is not None else _Named(r.old_spec), _Named(r.new_spec))
    with connection:
        run = run_canary(r.images, old, new, shares, r.bounds, iou_threshold=iou, drift_iou=r.drift_iou, labels=r.labels, salt=salt,
                         truths=r.truths, workers=workers, on_inconclusive=r.rules.on_inconclusive, on_step=on_step, on_record=on_record, replay_slice=replay_slice)
    last = run.last_step
    if last is None:
        raise UsageError(f"no step sent any image to the canary ({len(r.images)} images, steps {steps}); add a step of 100 or more images")
    if run.passed:
        what = "passed every step" if run.outcome.status == "pass" else f"{run.outcome.status} (no step failed)"
        action, target, reason = "canary-promote", r.new_spec, f"canary {what} ({steps}) on {run.canary_requests} requests"
    else:
        action, target, reason = "canary-rollback", r.old_spec, run.failure_reason()
    change = None if dry_run else promote(r.project, target, reason=reason, command=command, force=True, action=action)
    decision = CanaryDecision(run.passed, target.ref, reason, dry_run, change)
    settings = r.settings(iou, steps=list(shares), salt=salt, dry_run=dry_run, workers=workers, **engine)
    return Report("canary", run.records, last.summary, last.gates, settings, r.rules.on_inconclusive, timeline=run.steps, decision=decision,
                  unmatched=r.unmatched, wall_seconds=run.wall_seconds, truths=r.truths)
