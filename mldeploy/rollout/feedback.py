"""Versions scored on real traffic: a capture's requests that have labels (``mldeploy capture label``),
scored per version and per time window (``mldeploy eval --capture``, the server's
``/models/NAME/accuracy``).

Two kinds of answers are scored, with the same code as ``mldeploy eval``:

- **recorded**: what the server answered (the live version, or a canary), read from the capture;
- **run here**: a version this machine has, run now on the captured images (``--run v3``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from mldeploy.capture.records import CaptureRecord
from mldeploy.capture.replay import CapturedInput
from mldeploy.capture.store import CaptureStore
from mldeploy.capture.truth import labelset_of, truths_of
from mldeploy.errors import UsageError
from mldeploy.pipeline import DetectionResult
from mldeploy.project import Project
from mldeploy.truth.evaluate import Evaluation
from mldeploy.truth.evaluate import evaluate as evaluate_truth
from mldeploy.truth.labels import LabelProblem, parse_label_map, to_model_classes
from mldeploy.truth.run import Truths, score


@dataclass
class Scored:
    """One version's answers in one time window, against the labels."""

    version: str  # model@version
    answers: str  # "recorded" (the server's) or "run here"
    window: str | None  # the window's start (ISO 8601, UTC), or None: the whole capture
    requests: int  # labelled requests scored
    evaluation: Evaluation

    def to_dict(self) -> dict[str, Any]:
        e = self.evaluation
        return {"version": self.version, "answers": self.answers, "window": self.window, "requests": self.requests,
                "precision": e.precision, "recall": e.recall, "map50": e.map50, "map": e.map,
                "per_label": {k: {"tp": v.tp, "fp": v.fp, "fn": v.fn, "precision": v.precision, "recall": v.recall, "ap50": v.ap50}
                              for k, v in e.per_label.items()}}


@dataclass
class CaptureScores:
    folder: Path
    model: str
    requests: int  # the model's captured requests
    labelled: int  # of which have labels
    rows: list[Scored] = field(default_factory=list)
    problems: list[LabelProblem] = field(default_factory=list)
    window_s: float | None = None
    wall_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"capture": str(self.folder), "model": self.model, "requests": self.requests, "labelled": self.labelled, "window_s": self.window_s,
                "rows": [r.to_dict() for r in self.rows], "problems": [str(p) for p in self.problems]}


def window_of(captured_at: str, window_s: float | None) -> str | None:
    """The start of the window a request falls in (windows of ``window_s`` from the epoch, UTC)."""
    if window_s is None:
        return None
    at = datetime.fromisoformat(captured_at).timestamp()
    start = at - at % window_s
    return datetime.fromtimestamp(start, timezone.utc).isoformat(timespec="seconds")


def labelled_inputs(store, model: str, classes: Sequence[str], label_map: str | None = None, project_map: dict | None = None
                    ) -> tuple[list[CapturedInput], Truths, int]:
    """The captured requests of ``model`` that have labels, as replayable inputs with their
    :class:`Truths` (classes mapped to ``classes``), and how many requests of ``model`` there are."""
    records = store.records(model=model)
    found = truths_of(store, records)
    labelset = to_model_classes(labelset_of(f"capture {store.folder}", found), classes, parse_label_map(label_map, project_map))
    root = Path(store.folder) / "blobs"
    items = [CapturedInput(r.path, r.name, root, record=r) for r in records if r.id in found]
    truths = Truths(labelset, {item: labelset.images[item.record.name] for item in items}, list(labelset.problems))
    return items, truths, len(records)


def capture_truths(folder: Path, images: Sequence[CapturedInput], classes: Sequence[str], min_labeled: int, label_map: str | None = None,
                   project_map: dict | None = None) -> tuple[Truths | None, str]:
    """The labels attached to a capture, for a rehearsal that replays ``images`` (its requests): a
    :class:`Truths` when at least ``min_labeled`` of them have labels (None otherwise), and a note saying
    which applied: accuracy against the labels, or agreement with the recorded answers."""
    store = CaptureStore(folder, write=False)
    try:
        found = truths_of(store, [item.record for item in images])
    finally:
        store.close()
    if len(found) < min_labeled:
        return None, (f"judged on agreement with the recorded answers: {len(found)} of {len(images)} requests have labels, "
                      f"fewer than --min-labeled {min_labeled}")
    labelset = to_model_classes(labelset_of(f"capture {folder}", found), classes, parse_label_map(label_map, project_map))
    pairs = {item: labelset.images.get(item.record.name) for item in images}
    note = f"judged on accuracy against the labels of {len(found)} of {len(images)} requests (--min-labeled {min_labeled})"
    return Truths(labelset, pairs, list(labelset.problems)), note


def _model_classes(project: Project | None, model: str, store) -> list[str]:
    if project is not None:
        registry = project.registry()
        if model in registry.names():
            return list(dict.fromkeys(c for spec in registry.versions(model) for c in spec.classes))
    return sorted({label for text in store.truths().values() for label in json.loads(text)["labels"]})


def score_recorded(store, model: str, classes: Sequence[str], *, window_s: float | None = None, label_map: str | None = None,
                   project_map: dict | None = None) -> CaptureScores:
    """The server's own answers to labelled requests, per version that answered and per window."""
    return _score_recorded(store.folder, model, classes, *labelled_inputs(store, model, classes, label_map, project_map), window_s)


def _score_recorded(folder, model: str, classes: Sequence[str], items, truths: Truths, requests: int, window_s: float | None) -> CaptureScores:
    out = CaptureScores(Path(folder), model, requests, len(items), problems=list(truths.problems), window_s=window_s)
    groups: dict[tuple[str, str | None], list[tuple[CapturedInput, DetectionResult]]] = {}
    for item in items:
        r = item.record
        answer = DetectionResult(item.display, r.ref, r.answer, seconds=r.seconds)
        groups.setdefault((r.ref, window_of(r.captured_at, window_s)), []).append((item, answer))
    for (ref, window), answers in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        out.rows.append(Scored(ref, "recorded", window, len(answers), evaluate_truth(ref, score(answers, truths), classes)))
    return out


def score_capture(project: Project, folder: Path, model: str, run: Sequence[str] = (), *, window_s: float | None = None,
                  label_map: str | None = None, engine=None, on_listed: Callable[[int], None] | None = None,
                  on_result: Callable[[DetectionResult], None] | None = None) -> CaptureScores:
    """``mldeploy eval --capture``: the recorded answers, and each version of ``run`` run here on the
    labelled captured images, scored per version and per window.

    Raises:
        UsageError: no request of ``model`` in the capture has labels; an unknown version in ``run``.
        CaptureError: not a capture folder.
    """
    from mldeploy.rollout.sides import Version

    started = time.perf_counter()
    if not Path(folder).exists():
        raise UsageError(f"capture folder {folder} does not exist")
    registry = project.registry()
    specs = [registry.resolve(f"{model}@{v}") for v in run]  # unknown versions: exit 2 before anything runs
    store = CaptureStore(folder, write=False)
    try:
        classes = _model_classes(project, model, store)
        items, truths, requests = labelled_inputs(store, model, classes, label_map, project.settings.label_map)  # read once
        out = _score_recorded(folder, model, classes, items, truths, requests, window_s)
    finally:
        store.close()
    if not out.labelled:
        raise UsageError(f"no captured request of {model} in {folder} has labels yet ({out.requests} requests): "
                         f"attach some with 'mldeploy capture label {folder} --labels FILE'")
    if specs:
        engine = engine if engine is not None else _local(project)
        if on_listed is not None:
            on_listed(len(items) * len(specs))
        for spec in specs:
            side = Version(spec, project.load)
            engine.prepare(side)
            groups: dict[str | None, list] = {}
            with engine.session():
                for item, result in zip(items, engine.detect(side, items, reduced_decode=False)):
                    groups.setdefault(window_of(item.record.captured_at, window_s), []).append((item, result))
                    if on_result is not None:
                        on_result(result)
            for window, answers in sorted(groups.items(), key=lambda kv: kv[0] or ""):
                out.rows.append(Scored(spec.ref, "run here", window, len(answers), evaluate_truth(spec.ref, score(answers, truths), classes)))
    out.wall_seconds = time.perf_counter() - started
    return out


def _local(project: Project):
    from mldeploy.rollout.spec import EngineChoice

    return EngineChoice("local").make(project)


#: How ``capture export`` chooses images for review.
CHOICES = ("most-disagreeing", "least-confident", "random")


def choose_for_review(project: Project, folder: Path, model: str, how: str, n: int, *, new: str | None = None, include_labelled: bool = False,
                      seed: int = 0, engine=None, on_listed: Callable[[int], None] | None = None,
                      on_result: Callable[[DetectionResult], None] | None = None) -> tuple[list, list[str]]:
    """The ``n`` captured images of ``model`` most worth a reviewer's time, and the model's classes.

    ``most-disagreeing``: where ``new`` (run here) and the recorded answer disagree most (boxes missing,
    extra, relabelled or drifted); ``least-confident``: the recorded answers with the lowest box
    confidence (images with no box have nothing uncertain, and are left out); ``random``: a seeded draw,
    the control a sampling strategy is measured against. An image is offered once (its newest request),
    and images already labelled are skipped unless ``include_labelled``.
    """
    import numpy as np

    from mldeploy.capture.export import Chosen
    from mldeploy.compare import match
    from mldeploy.rollout.sides import Version

    if how not in CHOICES:
        raise UsageError(f"choose images by one of {', '.join(CHOICES)}")
    if how == "most-disagreeing" and new is None:
        raise UsageError("--most-disagreeing compares two versions: add --new VERSION (run here against the recorded answers)")
    spec = project.registry().resolve(f"{model}@{new}") if new is not None else None
    store = CaptureStore(folder, write=False)
    try:
        records = store.records(model=model)
        labelled = set(store.truths()) if not include_labelled else set()
    finally:
        store.close()
    newest = {r.sha256: r for r in records}  # ascending ids: the last request of each image wins
    candidates = [r for r in newest.values() if r.sha256 not in labelled]
    if not candidates:
        raise UsageError(f"no captured image of {model} in {folder} is left to review" + ("" if include_labelled else " (every one is labelled)"))
    root = Path(folder) / "blobs"

    def run(chosen_records):
        items = [CapturedInput(r.path, r.name, root, record=r) for r in chosen_records]
        local = engine if engine is not None else _local(project)
        side = Version(spec, project.load)
        local.prepare(side)
        if on_listed is not None:
            on_listed(len(items))
        with local.session():
            results = []
            for result in local.detect(side, items, reduced_decode=False):
                results.append(result)
                if on_result is not None:
                    on_result(result)
        return {item.record.id: result for item, result in zip(items, results)}

    scored: list[tuple[float, CaptureRecord]] = []
    answers: dict[int, DetectionResult] = {}
    if how == "most-disagreeing":
        answers = run(candidates)
        for r in candidates:
            result = answers[r.id]
            if not result.ok:
                scored.append((float("inf"), r))  # the new version failed on it: the most worth a look
                continue
            c = match(r.answer, result.detections)
            scored.append((c.disagreements + (1 - (c.mean_iou if c.mean_iou is not None else 1)), r))
        scored.sort(key=lambda s: (-s[0], s[1].id))
    elif how == "least-confident":
        scored = [(float(r.answer.confidence.min()), r) for r in candidates if len(r.answer)]
        scored.sort(key=lambda s: (s[0], s[1].id))
    else:
        rng = np.random.default_rng(seed)
        picks = rng.permutation(len(candidates))[:n]
        scored = [(float(i), candidates[i]) for i in sorted(picks)]
    scored = scored[:n]
    if spec is not None and how != "most-disagreeing":
        answers = run([r for _, r in scored])
    chosen = []
    for score_, r in scored:
        pairs = [(r.ref, r.answer)]
        if spec is not None and answers[r.id].ok:
            pairs.append((spec.ref, answers[r.id].detections))
        chosen.append(Chosen(r, score_ if score_ != float("inf") else 1e9, tuple(pairs)))
    classes = list(dict.fromkeys(c for s in project.registry().versions(model) for c in s.classes)) if model in project.registry().names() else []
    return chosen, classes
