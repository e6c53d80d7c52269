"""Shadow replay results: both versions' answers on an image (:class:`ShadowRecord`), the streaming,
mergeable :class:`ShadowMetric` every engine folds them into, and its :class:`ShadowSummary` that the gates
and reports read. How the images are answered is an engine's (:mod:`mldeploy.rollout.engines`), by the
fairness rules of :class:`~mldeploy.rollout.pairs.Pair`.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mldeploy.compare import DRIFT_IOU, AgreementMetric, AgreementResult, ImageComparison
from mldeploy.errors import MldeployError
from mldeploy.pipeline import DetectionResult, ImageInput
from mldeploy.rollout.latency import LatencySample, LatencyStats, RatioEstimate, paired_ratio
from mldeploy.truth.evaluate import TruthScores, evaluate
from mldeploy.truth.run import Truths, score

if TYPE_CHECKING:
    from mldeploy.models.base import Detector
    from mldeploy.rollout.sides import Side


@dataclass
class ShadowRecord:
    """Both versions' answers on one image and how they compare.

    ``input_error`` is set when the image itself could not be read (then neither version ran);
    a version that raised has its error in its own result. ``comparison`` is None unless the old
    version answered: when only the new one failed, it counts every old box as missing.
    """

    index: int
    item: ImageInput
    old: DetectionResult
    new: DetectionResult
    comparison: ImageComparison | None = None
    input_error: MldeployError | None = None
    compare_seconds: float = 0.0

    @property
    def source(self) -> str:
        return self.item.display

    @property
    def disagreements(self) -> int:
        return self.comparison.disagreements if self.comparison is not None else 0

    @property
    def answered(self) -> bool:
        """Both versions answered."""
        return self.input_error is None and self.old.ok and self.new.ok

    @property
    def agrees(self) -> bool:
        return self.comparison is not None and self.comparison.agrees


@dataclass(frozen=True)
class ShadowSummary:
    """Everything the gates and the reports need about a replay (old version = reference).

    ``agreement`` counts an image the new version failed on (and the old one answered) as every old
    box missing; ``agreement.answered`` leaves those images out. ``latency_pairs`` holds
    ``(old seconds, new seconds)`` for each image both versions answered.
    """

    old: str
    new: str
    iou_threshold: float
    images: int
    compared: int
    unreadable: int
    old_errors: int
    new_errors: int
    agreement: AgreementResult
    old_latency: LatencyStats
    new_latency: LatencyStats
    latency_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)), compare=False, repr=False)
    drift_iou: float = DRIFT_IOU
    recorded: bool = False  # the old answers are a capture's: the old version did not run here, so no latency pairs
    truth: TruthScores | None = field(default=None, compare=False, repr=False)  # both versions against the labels (--labels)
    latency_sampled: bool = False  # the percentiles are of a uniform sample of the images (a long replay)

    @cached_property
    def p50_ratio(self) -> RatioEstimate | None:
        """New p50 over old p50 on the paired images, with its interval (the median resists one slow outlier)."""
        return paired_ratio(self.latency_pairs, 50)

    @cached_property
    def p95_ratio_estimate(self) -> RatioEstimate | None:
        """New p95 over old p95 on the paired images: the tail, where a version slow on some inputs shows."""
        return paired_ratio(self.latency_pairs, 95)

    @property
    def latency_ratio(self) -> float | None:
        return self.p50_ratio.value if self.p50_ratio is not None else None

    @property
    def p95_ratio(self) -> float | None:
        return self.p95_ratio_estimate.value if self.p95_ratio_estimate is not None else None

    @property
    def error_rate(self) -> float | None:
        """Share of readable images the new version failed on."""
        readable = self.images - self.unreadable
        return self.new_errors / readable if readable else None


#: A replay of at most this many images keeps every image's record for the reports (JSON and JUnit list
#: each image); a longer one keeps the errors and the most disagreeing ones, and ``--records`` has every row.
KEEP_ALL = 1000
#: Most error records a long replay keeps (the lowest-numbered); every error is counted.
KEEP_ERRORS = 1000
#: Most disagreeing images a long replay keeps: what the HTML report shows (its default) and more than
#: any table prints.
KEEP_TOP = 200


def _merged_heap(a: list, b: list, size: int) -> list:
    kept = heapq.nlargest(size, a + b)
    heapq.heapify(kept)
    return kept


def _disagreement_rank(record: ShadowRecord) -> tuple:
    """Smaller is more disagreeing: more boxes first, then a lower mean IoU, then the earlier image."""
    mean_iou = record.comparison.mean_iou
    return (-record.disagreements, mean_iou if mean_iou is not None else -1, record.index)


@dataclass
class ShadowMetric:
    """The streaming summary of a replay: ``update(record)`` per image, ``compute()`` at any time (the
    canary computes it at every step), ``a + b`` to add up shards.

    Memory stays flat however many images pass: boxes are folded into mergeable agreement counts, the
    latencies into a bounded :class:`~mldeploy.rollout.latency.LatencySample`, and of the records it keeps
    every one up to ``keep_all`` images, past that the ``keep_top`` most disagreeing and the first
    :data:`KEEP_ERRORS` that failed. With ``truths`` each version's per-image score against the labels is
    kept too: COCO's AP needs every scored box, and the labels themselves are in memory already.
    """

    old: str
    new: str
    iou_threshold: float = 0.5
    drift_iou: float = DRIFT_IOU
    recorded: bool = False  # the old side is a capture's recorded answers
    truths: Truths | None = None  # ground truth: both versions are scored against it
    keep_top: int = field(default_factory=lambda: KEEP_TOP)  # read when made: a test may lower the module's figures
    keep_all: int = field(default_factory=lambda: KEEP_ALL)
    images: int = 0
    unreadable: int = 0
    old_errors: int = 0
    new_errors: int = 0
    compared: int = 0
    compare_seconds: float = 0.0  # matching time of the records folded in
    agreement: AgreementMetric = None  # type: ignore[assignment]
    latency: LatencySample = field(default_factory=LatencySample)
    _all: list[ShadowRecord] | None = field(default_factory=list)  # every record, until there are more than keep_all
    _top: list = field(default_factory=list)  # heap: the least disagreeing of those kept on top
    _errors: list = field(default_factory=list)  # heap: the highest-numbered of those kept on top
    _scores: tuple[list, list] = field(default_factory=lambda: ([], []))  # (old, new): (index, ImageScore) against the truths

    def __post_init__(self) -> None:
        if self.agreement is None:
            self.agreement = AgreementMetric(self.iou_threshold, self.drift_iou)

    def update(self, record: ShadowRecord) -> None:
        self.images += 1
        self.compare_seconds += record.compare_seconds
        if record.input_error is not None:
            self.unreadable += 1
        else:
            self.old_errors += not record.old.ok
            self.new_errors += not record.new.ok
            self.compared += record.answered
            self.latency.add(record.index, record.old.seconds if record.old.ok else None, record.new.seconds if record.new.ok else None)
            if self.truths is not None:
                for side, scores in zip((record.old, record.new), self._scores):
                    scores.extend((record.index, s) for s in score([(record.item, side)], self.truths))
        if record.comparison is not None:
            self.agreement.add(record.comparison)
        self._keep(record)

    def _keep(self, record: ShadowRecord) -> None:
        if self._all is not None:
            self._all.append(record)
            if len(self._all) > self.keep_all:
                self._all = None
        if record.input_error is not None or not (record.old.ok and record.new.ok):
            entry = (-record.index, id(record), record)
            if len(self._errors) < KEEP_ERRORS:
                heapq.heappush(self._errors, entry)
            elif entry > self._errors[0]:
                heapq.heapreplace(self._errors, entry)
        if record.comparison is not None and not record.comparison.agrees:
            rank = tuple(-v for v in _disagreement_rank(record))
            entry = (rank, id(record), record)
            if len(self._top) < self.keep_top:
                heapq.heappush(self._top, entry)
            elif entry > self._top[0]:
                heapq.heapreplace(self._top, entry)

    @property
    def records(self) -> list[ShadowRecord]:
        """The records kept, in image order: every one while the replay is short."""
        if self._all is not None:
            return sorted(self._all, key=lambda r: r.index)
        kept = {r.index: r for _, _, r in self._errors}
        kept.update((r.index, r) for _, _, r in self._top)
        return [kept[i] for i in sorted(kept)]

    def reset(self) -> None:
        """Forget every image folded in (the settings stay)."""
        fresh = ShadowMetric(self.old, self.new, self.iou_threshold, self.drift_iou, self.recorded, self.truths, self.keep_top, self.keep_all)
        self.__dict__.update(fresh.__dict__)

    @property
    def complete(self) -> bool:
        """Every image's record is kept."""
        return self._all is not None

    def __add__(self, other: "ShadowMetric") -> "ShadowMetric":
        merged = ShadowMetric(self.old, self.new, self.iou_threshold, self.drift_iou, self.recorded, self.truths, self.keep_top, self.keep_all)
        for name in ("images", "unreadable", "old_errors", "new_errors", "compared", "compare_seconds"):
            setattr(merged, name, getattr(self, name) + getattr(other, name))
        merged.agreement, merged.latency = self.agreement + other.agreement, self.latency + other.latency
        merged._scores = (self._scores[0] + other._scores[0], self._scores[1] + other._scores[1])
        merged._all = None
        if self._all is not None and other._all is not None and len(self._all) + len(other._all) <= self.keep_all:
            merged._all = self._all + other._all
        merged._errors = _merged_heap(self._errors, other._errors, KEEP_ERRORS)
        merged._top = _merged_heap(self._top, other._top, self.keep_top)
        return merged

    def compute(self) -> ShadowSummary:
        old_latency, new_latency = self.latency.stats()
        return ShadowSummary(
            old=self.old,
            new=self.new,
            iou_threshold=self.iou_threshold,
            images=self.images,
            compared=self.compared,
            unreadable=self.unreadable,
            old_errors=self.old_errors,
            new_errors=self.new_errors,
            agreement=self.agreement.compute(),
            old_latency=old_latency,
            new_latency=new_latency,
            latency_pairs=np.zeros((0, 2)) if self.recorded else self.latency.pairs(),
            drift_iou=self.drift_iou,
            recorded=self.recorded,
            truth=self._truth(),
            latency_sampled=self.latency.sampled,
        )

    def _truth(self) -> TruthScores | None:
        if self.truths is None:
            return None
        classes = self.truths.labels.classes
        old, new = ([s for _, s in sorted(scores, key=lambda pair: pair[0])] for scores in self._scores)  # image order, whatever the arrival
        return TruthScores(new=evaluate(self.new, new, classes), old=evaluate(self.old, old, classes))


def most_disagreeing(records: Sequence[ShadowRecord], n: int) -> list[ShadowRecord]:
    """The ``n`` images with the most disagreeing boxes (ties: lower mean IoU first)."""
    compared = [r for r in records if r.comparison is not None and not r.comparison.agrees]
    compared.sort(key=_disagreement_rank)
    return compared[:n]


@dataclass
class ShadowRun:
    """A finished replay: the records kept (in input order; see :class:`ShadowMetric`), the summary, and timings."""

    records: list[ShadowRecord]
    summary: ShadowSummary
    wall_seconds: float
    compare_seconds: float


def run_shadow(inputs: Sequence[ImageInput], old: "Side | Detector", new: "Side | Detector", *, engine=None, workers: int = 1,
               truths: Truths | None = None, on_record=None, **pair_options) -> ShadowRun:
    """Replay ``inputs`` through both sides on ``engine`` (default: the local one, with ``workers``
    inference threads) and summarise; ``on_record(record)`` is called as each image finishes.
    ``pair_options`` are :class:`~mldeploy.rollout.pairs.Pair`'s: iou_threshold, drift_iou, labels, warm_up, alternate."""
    from mldeploy.rollout.engines.local import LocalEngine
    from mldeploy.rollout.pairs import Pair
    from mldeploy.rollout.sides import as_side

    pair = Pair(as_side(old), as_side(new), **pair_options)
    engine = engine if engine is not None else LocalEngine(workers)
    metric = ShadowMetric(pair.old.spec.ref, pair.new.spec.ref, pair.iou_threshold, pair.drift_iou, recorded=pair.recorded, truths=truths)
    started = time.perf_counter()
    for record in engine.replay(pair, inputs):
        metric.update(record)
        if on_record is not None:
            on_record(record)
    return finish_run(metric, time.perf_counter() - started)


def finish_run(metric: ShadowMetric, wall_seconds: float) -> ShadowRun:
    """The summary of a finished replay, with what summarising took counted in its compare time."""
    summarising = time.perf_counter()
    summary = metric.compute()
    records = metric.records  # in image order: an unreadable image is yielded as soon as it fails, ahead of images in flight
    return ShadowRun(records, summary, wall_seconds, time.perf_counter() - summarising + metric.compare_seconds)
