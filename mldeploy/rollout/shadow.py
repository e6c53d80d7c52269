"""Shadow replay: both versions on every image, matched one to one, summed up for the gates.

:func:`replay` is the engine that ``mldeploy shadow`` and ``mldeploy canary`` share. Each image is
decoded once (on an I/O thread, ahead of time, so decoding overlaps inference) and handed to both
versions, one after the other by default or side by side on two threads (``workers=2``). Every
Detector holds its own lock and times its forward pass under that lock, so running them side by side
never changes an answer and waiting for a lock never counts as latency.

One after the other, whichever version runs second on an image finds it warm in the caches: with the
old version always first, the same network measured 5-10% faster as "new". So the order alternates
from one image to the next (benchmarks/latency_bias.py shows the bias before and after).

Interference (the scheduler, another process) only ever adds time. A pair whose ratio is an outlier
(one version over 1.5x the other) is timed once more and each version keeps its faster time, the way
``timeit`` reports the minimum; at most two images and a quarter of the rest are re-timed, since beyond
that the difference is the versions', not noise. The answers are the first run's (the models are deterministic).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Iterator, Sequence

import numpy as np

from mldeploy.capture.replay import CapturedInput, RecordedAnswers
from mldeploy.compare import DRIFT_IOU, AgreementMetric, AgreementResult, ImageComparison, failed_comparison, match
from mldeploy.errors import MldeployError
from mldeploy.models.base import Detector
from mldeploy.pipeline import DetectionResult, ImageInput, read_input, run_detector
from mldeploy.rollout.latency import LatencySample, LatencyStats, RatioEstimate, paired_ratio
from mldeploy.truth.evaluate import TruthScores, evaluate
from mldeploy.truth.run import Truths, score


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


def _run(detector: Detector, image: np.ndarray, item: ImageInput, labels: Sequence[str] | None) -> DetectionResult:
    result = DetectionResult(item.display, detector.spec.ref)
    if isinstance(detector, RecordedAnswers):  # a capture's stored answer: nothing runs
        answer = item.record.answer
        result.detections, result.seconds = (answer.filter(labels=labels) if labels else answer), item.record.seconds
        return result
    try:
        result.detections, result.seconds = run_detector(detector, image, labels=labels)
    except MldeployError as exc:
        result.error = exc
    return result


#: A pair of latencies further apart than this is timed again (noise only ever adds time).
RETIME_RATIO = 1.5
#: Most images that may be re-timed: a few, plus a quarter of those answered so far (more outliers than
#: that are a real difference, not noise). The few matter on a small set, where one hiccup is the p95.
RETIME_FEW, RETIME_SHARE = 2, 0.25


def _retime(record: ShadowRecord, image: np.ndarray, old: Detector, new: Detector, new_first: bool) -> None:
    """Time both versions once more on ``image``, in the same order as before; each keeps its faster time."""
    for side, detector in ((("new", new), ("old", old)) if new_first else (("old", old), ("new", new))):
        result = getattr(record, side)
        try:
            _, seconds = detector.timed_detect(image)
        except Exception:  # it answered the first time; a failure now says nothing about its speed
            continue
        result.seconds = min(result.seconds, seconds)


def _outlier(record: ShadowRecord) -> bool:
    if isinstance(record.item, CapturedInput):  # the old time was recorded by the server: nothing to time again
        return False
    a, b = record.old.seconds, record.new.seconds
    return record.old.ok and record.new.ok and min(a, b) > 0 and max(a, b) / min(a, b) > RETIME_RATIO


def replay(
    inputs: Iterable[ImageInput],
    old: Detector,
    new: Detector,
    *,
    iou_threshold: float = 0.5,
    drift_iou: float = DRIFT_IOU,
    labels: Sequence[str] | None = None,
    workers: int = 1,
    prefetch: int = 4,
    warm_up: bool = True,
    alternate: bool = True,
) -> Iterator[ShadowRecord]:
    """Run ``old`` and ``new`` on every image; yield one :class:`ShadowRecord` per image, in order.

    Args:
        workers: inference threads. 1 (the default) runs the versions one after the other, each with
            the machine to itself while it is timed; 2 runs them side by side, which is faster only
            when a version leaves a core idle (MTCNN) and slower for OpenCV models, which already
            use every core (benchmarks/shadow_overhead.py), and it inflates both latencies.
        labels: compare only these labels (both versions' other boxes are dropped first).
        warm_up: run each version once, untimed, on the first readable image, so that first-call
            costs (memory allocation, graph tracing) do not land in the latency figures.
        alternate: run the new version first on every other image, so that neither version always
            gets the caches the other one warmed (``False`` only to measure that bias).
    """
    source = iter(enumerate(inputs))
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mldeploy-io") as io_pool, ThreadPoolExecutor(
        max_workers=max(1, workers), thread_name_prefix="mldeploy-infer"
    ) as infer_pool:
        decoding: deque[tuple[int, ImageInput, Future]] = deque()
        running: deque[tuple[int, ImageInput, np.ndarray, Future, Future]] = deque()
        answered = retimed = 0

        def queue_next() -> None:
            nxt = next(source, None)
            if nxt is not None:
                index, item = nxt
                decoding.append((index, item, io_pool.submit(read_input, item)))

        for _ in range(max(1, prefetch)):
            queue_next()
        while decoding or running:
            # Keep two images in flight: while one version finishes image k, the other can start k+1.
            while decoding and len(running) < 2:
                index, item, decoded = decoding.popleft()
                queue_next()
                try:
                    image = decoded.result()
                except MldeployError as exc:
                    yield ShadowRecord(
                        index, item, DetectionResult(item.display, old.spec.ref, error=exc),
                        DetectionResult(item.display, new.spec.ref, error=exc), input_error=exc,
                    )
                    continue
                if warm_up:
                    warm_up = False
                    for future in [infer_pool.submit(_run, d, image, item, labels) for d in (old, new)]:
                        future.result()
                # By position, not by detector: in a self-comparison old and new are the same loaded model,
                # and each side must still run (and be timed) on its own.
                new_first = alternate and index % 2 == 1
                first, second = (new, old) if new_first else (old, new)
                futures = [infer_pool.submit(_run, d, image, item, labels) for d in (first, second)]
                old_future, new_future = futures[::-1] if new_first else futures
                running.append((index, item, image, old_future, new_future))
            if running:
                index, item, image, old_future, new_future = running.popleft()
                record = ShadowRecord(index, item, old_future.result(), new_future.result())
                answered += record.answered
                if _outlier(record) and retimed < RETIME_FEW + RETIME_SHARE * answered:
                    retimed += 1
                    _retime(record, image, old, new, alternate and index % 2 == 1)
                if record.old.ok:
                    matching = time.perf_counter()
                    if record.new.ok:
                        record.comparison = match(record.old.detections, record.new.detections, iou_threshold, drift_iou)
                    else:
                        record.comparison = failed_comparison(record.old.detections, drift_iou)
                    record.compare_seconds = time.perf_counter() - matching
                yield record


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


def run_shadow(
    inputs: Sequence[ImageInput],
    old: Detector,
    new: Detector,
    *,
    iou_threshold: float = 0.5,
    drift_iou: float = DRIFT_IOU,
    labels: Sequence[str] | None = None,
    workers: int = 1,
    warm_up: bool = True,
    alternate: bool = True,
    on_record=None,
    truths: Truths | None = None,
) -> ShadowRun:
    """:func:`replay` to the end and summarise; ``on_record(record)`` is called as each image finishes."""
    metric = ShadowMetric(old.spec.ref, new.spec.ref, iou_threshold, drift_iou, recorded=isinstance(old, RecordedAnswers), truths=truths)
    started = time.perf_counter()
    for record in replay(inputs, old, new, iou_threshold=iou_threshold, drift_iou=drift_iou, labels=labels, workers=workers, warm_up=warm_up,
                         alternate=alternate):
        metric.update(record)
        if on_record is not None:
            on_record(record)
    wall = time.perf_counter() - started
    return finish_run(metric, wall)


def finish_run(metric: ShadowMetric, wall_seconds: float) -> ShadowRun:
    """The summary of a finished replay, with what summarising took counted in its compare time."""
    summarising = time.perf_counter()
    summary = metric.compute()
    records = metric.records  # in image order: an unreadable image is yielded as soon as it fails, ahead of images in flight
    return ShadowRun(records, summary, wall_seconds, time.perf_counter() - summarising + metric.compare_seconds)
