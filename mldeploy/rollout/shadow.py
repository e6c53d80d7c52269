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
from mldeploy.images import read_image
from mldeploy.models.base import Detector
from mldeploy.pipeline import DetectionResult, ImageInput, run_detector
from mldeploy.rollout.latency import LatencyStats, RatioEstimate, paired_ratio
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
                decoding.append((index, item, io_pool.submit(read_image, item.path)))

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


@dataclass
class ShadowMetric:
    """``update(record)`` per image, then ``compute()``; the canary computes it over growing shares."""

    old: str
    new: str
    iou_threshold: float = 0.5
    drift_iou: float = DRIFT_IOU
    records: list[ShadowRecord] = field(default_factory=list)
    recorded: bool = False  # the old side is a capture's recorded answers
    truths: Truths | None = None  # ground truth: both versions are scored against it

    def update(self, record: ShadowRecord) -> None:
        self.records.append(record)

    def reset(self) -> None:
        self.records.clear()

    def compute(self) -> ShadowSummary:
        agreement = AgreementMetric(self.iou_threshold, self.drift_iou)
        for record in self.records:
            if record.comparison is not None:
                agreement.add(record.comparison)
        readable = [r for r in self.records if r.input_error is None]
        answered = [r for r in readable if r.answered]
        return ShadowSummary(
            old=self.old,
            new=self.new,
            iou_threshold=self.iou_threshold,
            images=len(self.records),
            compared=len(answered),
            unreadable=len(self.records) - len(readable),
            old_errors=sum(not r.old.ok for r in readable),
            new_errors=sum(not r.new.ok for r in readable),
            agreement=agreement.compute(),
            old_latency=LatencyStats.of([r.old.seconds for r in readable if r.old.ok]),
            new_latency=LatencyStats.of([r.new.seconds for r in readable if r.new.ok]),
            latency_pairs=np.array([(r.old.seconds, r.new.seconds) for r in answered if not self.recorded], dtype=np.float64).reshape(-1, 2),
            drift_iou=self.drift_iou,
            recorded=self.recorded,
            truth=self._truth(readable),
        )

    def _truth(self, readable: list[ShadowRecord]) -> TruthScores | None:
        if self.truths is None:
            return None
        classes = self.truths.labels.classes
        return TruthScores(new=evaluate(self.new, score([(r.item, r.new) for r in readable], self.truths), classes),
                           old=evaluate(self.old, score([(r.item, r.old) for r in readable], self.truths), classes))


def most_disagreeing(records: Sequence[ShadowRecord], n: int) -> list[ShadowRecord]:
    """The ``n`` images with the most disagreeing boxes (ties: lower mean IoU first)."""
    compared = [r for r in records if r.comparison is not None and not r.comparison.agrees]
    compared.sort(key=lambda r: (-r.disagreements, r.comparison.mean_iou if r.comparison.mean_iou is not None else -1, r.index))
    return compared[:n]


@dataclass
class ShadowRun:
    """A finished replay: its records (in input order), the summary, and timings."""

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
    metric.records.sort(key=lambda r: r.index)  # an unreadable image is yielded as soon as it fails, ahead of images in flight
    summarising = time.perf_counter()
    summary = metric.compute()
    compare_seconds = time.perf_counter() - summarising + sum(r.compare_seconds for r in metric.records)
    return ShadowRun(metric.records, summary, wall, compare_seconds)
