"""``detect`` and ``eval`` as library functions: a spec in, one result out, on any engine.

Like the rehearsals (:mod:`mldeploy.rollout.rehearsal`), each takes a spec of
:mod:`mldeploy.rollout.spec`, runs it on the engine the spec names, and returns one result object that
the renderers and the exit code read.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

from mldeploy.errors import OutputError, UsageError
from mldeploy.fileio import check_destinations
from mldeploy.models.base import ModelSpec
from mldeploy.models.registry import parse_classes
from mldeploy.pipeline import AnnotatedImageWriter, DetectionResult, RunSummary, collect_inputs
from mldeploy.project import Project
from mldeploy.rollout.gates import evaluate, resolve_rules, verdict
from mldeploy.rollout.sides import Version
from mldeploy.rollout.spec import DetectSpec, EvalSpec
from mldeploy.truth.evaluate import evaluate as evaluate_truth
from mldeploy.truth.run import EvalRun, read_truths, score

#: ``loading(spec)``: a context the caller shows a model's loading in (``loading faces@v2 (mtcnn)...``).
Loading = Callable[[ModelSpec], ContextManager]


def _no_status(spec: ModelSpec) -> ContextManager:
    return contextlib.nullcontext()


@dataclass
class DetectRun:
    """A finished ``detect``: one result per input (those that matched nothing first), and the totals."""

    results: list[DetectionResult]
    summary: RunSummary
    save: Path | None = None

    verdict = None  # no gate judges a detect run

    @property
    def saved(self) -> list[Path]:
        return [r.saved_to for r in self.results if r.saved_to is not None]

    @property
    def input_errors(self) -> bool:
        return bool(self.summary.failed)


def run_detect(project: Project, spec: DetectSpec, *, on_listed: Callable[[int], None] | None = None,
               on_result: Callable[[DetectionResult], None] | None = None, loading: Loading = _no_status) -> DetectRun:
    """Run one version over the inputs on the spec's engine.

    Raises:
        UsageError: an unknown model, version or class, or ``--save`` naming a file.
    """
    model = project.registry().resolve(spec.model)
    labels = parse_classes(spec.classes, model)
    save = spec.save
    if save is not None and save.exists() and not save.is_dir():
        raise UsageError(f"--save {save} is a file, not a folder")
    engine = spec.engine.make(project)
    images, unmatched = collect_inputs(spec.inputs.paths, exclude=save)
    summary = RunSummary(model.ref)
    side = Version(model, project.load)
    if on_listed is not None:
        on_listed(len(images))
    if images:
        started = time.perf_counter()
        with loading(model) if engine.loads_here else contextlib.nullcontext():
            engine.prepare(side)
        summary.load_seconds = time.perf_counter() - started
    results = [DetectionResult(arg, model.ref, error=error) for arg, error in unmatched]
    started = time.perf_counter()
    if images:
        writer = AnnotatedImageWriter(save, images) if save is not None else None
        with engine.session():
            for result in engine.detect(side, images, conf=spec.conf, labels=labels, writer=writer):
                results.append(result)
                if on_result is not None:
                    on_result(result)
    summary.wall_seconds = time.perf_counter() - started
    for result in results:
        summary.update(result)
    return DetectRun(results, summary, save)


def run_eval(project: Project, spec: EvalSpec, *, on_listed: Callable[[int], None] | None = None,
             on_result: Callable[[DetectionResult], None] | None = None, loading: Loading = _no_status) -> EvalRun:
    """Run one version on every image and score it against the labels; judge ``--min-map`` if given.

    Raises:
        LabelsError: the labels cannot be read (exit 2). UsageError: no image, or a report destination
        that cannot be written.
    """
    model = project.registry().resolve(spec.model)
    images, unmatched = collect_inputs(spec.inputs.paths)
    try:  # before the run, as shadow does: a report that cannot be written must not cost the run
        check_destinations(spec.reports.files, ((spec.reports.html, "--html"),), (item.path for item in images if item.uri is None))
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    engine = spec.engine.make(project)
    if not images:
        raise UsageError("no images to evaluate: " + "; ".join(f"{arg}: {err}" for arg, err in unmatched))
    truths = read_truths(spec.labels.path, images, model.classes, label_map=spec.labels.label_map, project_map=project.settings.label_map,
                         names=spec.labels.names)
    side = Version(model, project.load)
    started = time.perf_counter()
    with loading(model) if engine.loads_here else contextlib.nullcontext():
        engine.prepare(side)
    load_seconds = time.perf_counter() - started
    if on_listed is not None:
        on_listed(len(images))
    started = time.perf_counter()
    results: list[DetectionResult] = []
    with engine.session():
        for result in engine.detect(side, images, reduced_decode=False):  # full decoding: the pixels shadow --labels sees
            results.append(result)
            if on_result is not None:
                on_result(result)
    evaluation = evaluate_truth(model.ref, score(list(zip(images, results)), truths), model.classes)
    settings: dict[str, Any] = {"model": model.ref, "labels": str(spec.labels.path), "format": truths.labels.format, "iou": 0.5,
                                **{k: v for k, v in engine.settings.items() if k != "workers"}}
    run = EvalRun(evaluation, truths, results, unmatched, settings, time.perf_counter() - started, load_seconds=load_seconds)
    bounds = resolve_rules(spec.gates.bounds, policy="none", truth=True).bounds  # only the bounds given, checked as shadow's are
    run.gates = evaluate(run, bounds)
    run.verdict = verdict(run.gates)
    return run
