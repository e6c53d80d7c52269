"""What ``mldeploy eval`` and ``shadow --labels`` share: reading the labels, pairing them with the
images, scoring a version's answers, and eval's result (:class:`EvalRun`). The run itself is
:func:`mldeploy.rollout.runs.run_eval`, on an engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from mldeploy.detections import Detections
from mldeploy.errors import MldeployError
from mldeploy.pipeline import DetectionResult, ImageInput
from mldeploy.truth.evaluate import Evaluation, ImageScore, TruthScores, score_image
from mldeploy.truth.labels import ImageTruth, LabelProblem, LabelSet, load_labels, parse_label_map, to_model_classes


@dataclass
class Truths:
    """Labels paired with the images of a run: ``pairs[item]`` is the truth of that image (None: no labels,
    and the image is left out of the scores), and every problem met on the way."""

    labels: LabelSet
    pairs: dict[ImageInput, ImageTruth | None]
    problems: list[LabelProblem]

    def truth_of(self, item: ImageInput, size: tuple[int, int]) -> tuple[Detections, Detections] | None:
        """The truth of ``item`` for an image of ``size``: (boxes to find, boxes to ignore)."""
        truth = self.pairs.get(item)
        if truth is None:
            return None
        w, h = size
        xyxy = np.clip(truth.boxes_for(size), 0, [w, h, w, h])  # a box may pass the edge by a pixel (EDGE_TOLERANCE)
        keep, ignore = ~truth.ignore, truth.ignore
        labels = [str(label) for label in truth.labels]

        def part(mask) -> Detections:
            return Detections(xyxy[mask], [1.0] * int(mask.sum()), [0] * int(mask.sum()), [l for l, m in zip(labels, mask) if m], size)

        return part(keep), part(ignore)


def read_truths(labels: str | Path, images: Sequence[ImageInput], classes: Sequence[str], *, label_map: str | None = None,
                project_map: dict[str, str] | None = None, names: Path | None = None) -> Truths:
    """Read the labels, map their classes to the model's, and pair each image with its truth: by its
    path relative to the folder it was found in, else by file name (YOLO: by stem)."""
    mapping = parse_label_map(label_map, project_map)
    labelset = to_model_classes(load_labels(labels, names), classes, mapping)
    pairs: dict[ImageInput, ImageTruth | None] = {}
    problems = list(labelset.problems)
    used: set[str] = set()
    for item in images:
        relative = PurePosixPath(item.key)
        truth = labelset.find(relative.as_posix(), item.path.name)
        if truth is None and labelset.format == "yolo":
            truth = labelset.find(relative.with_suffix("").as_posix(), item.path.stem)
        if truth is None:
            problems.append(LabelProblem("image without labels", item.display, "-", f"no entry in {labelset.source} names this image"))
        else:
            used.add(truth.key)
        pairs[item] = truth
    for key, truth in labelset.images.items():
        if key not in used:
            problems.append(LabelProblem("labels without an image", truth.file, key, "no image given has this name"))
    return Truths(labelset, pairs, problems)


@dataclass
class EvalRun:
    """A finished ``mldeploy eval``: the scores, and what was skipped or failed."""

    evaluation: Evaluation
    truths: Truths
    results: list[DetectionResult]
    unmatched: list[tuple[str, MldeployError]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0  # the run, without loading the version
    gates: list = field(default_factory=list)  # GateResult of --min-map, when given
    verdict: Any = None  # the gates' Verdict (set by the run, with the gates)
    load_seconds: float = 0.0

    recorded = False  # what a gate table reads of a rehearsal's summary: nothing here was recorded elsewhere

    @property
    def truth(self) -> TruthScores:
        """The version's scores, as the truth gates read them (``min_map``)."""
        return TruthScores(new=self.evaluation)

    @property
    def input_errors(self) -> bool:
        """Something was skipped or failed (exit 1 when the gates let the version through)."""
        return not self.complete

    @property
    def failed(self) -> list[DetectionResult]:
        return [r for r in self.results if not r.ok]

    @property
    def problems(self) -> list[LabelProblem]:
        return self.truths.problems

    @property
    def complete(self) -> bool:
        """Nothing was skipped and nothing failed (exit 0; otherwise 1)."""
        return not (self.problems or self.failed or self.unmatched)


def score(answers: Sequence[tuple[ImageInput, DetectionResult]], truths: Truths, iou: float = 0.5) -> list[ImageScore]:
    """Each answered image that has labels, scored at ``iou``."""
    out = []
    for item, result in answers:
        if not result.ok:
            continue
        found = truths.truth_of(item, result.detections.image_size)
        if found is not None:
            out.append(score_image(result.source, found[0], found[1], result.detections, iou))
    return out
