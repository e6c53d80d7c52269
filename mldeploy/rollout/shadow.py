"""Shadow replay: both versions on every image, matched one to one, summed up for the gates.

:func:`replay` is the engine that ``mldeploy shadow`` and ``mldeploy canary`` share. Each image is
decoded once (on an I/O thread, ahead of time, so decoding overlaps inference) and handed to both
versions, one after the other by default or side by side on two threads (``workers=2``). Every
Detector holds its own lock and times its forward pass under that lock, so running them side by side
never changes an answer and waiting for a lock never counts as latency.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from mldeploy.compare import AgreementMetric, AgreementResult, ImageComparison, match
from mldeploy.errors import MldeployError
from mldeploy.images import read_image
from mldeploy.models.base import Detector
from mldeploy.pipeline import DetectionResult, ImageInput, run_detector


@dataclass
class ShadowRecord:
    """Both versions' answers on one image and how they compare.

    ``input_error`` is set when the image itself could not be read (then neither version ran);
    a version that raised has its error in its own result, and ``comparison`` is None.
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
        c = self.comparison
        return len(c.missing) + len(c.extra) + len(c.relabelled) if c is not None else 0

    @property
    def agrees(self) -> bool:
        return self.comparison is not None and self.comparison.agrees


def _run(detector: Detector, image: np.ndarray, source: str, labels: Sequence[str] | None) -> DetectionResult:
    result = DetectionResult(source, detector.spec.ref)
    try:
        result.detections, result.seconds = run_detector(detector, image, labels=labels)
    except MldeployError as exc:
        result.error = exc
    return result


def replay(
    inputs: Iterable[ImageInput],
    old: Detector,
    new: Detector,
    *,
    iou_threshold: float = 0.5,
    labels: Sequence[str] | None = None,
    workers: int = 1,
    prefetch: int = 4,
    warm_up: bool = True,
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
    """
    source = iter(enumerate(inputs))
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mldeploy-io") as io_pool, ThreadPoolExecutor(
        max_workers=max(1, workers), thread_name_prefix="mldeploy-infer"
    ) as infer_pool:
        decoding: deque[tuple[int, ImageInput, Future]] = deque()
        running: deque[tuple[int, ImageInput, Future, Future]] = deque()

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
                    for future in [infer_pool.submit(_run, d, image, item.display, labels) for d in (old, new)]:
                        future.result()
                running.append((
                    index, item,
                    infer_pool.submit(_run, old, image, item.display, labels),
                    infer_pool.submit(_run, new, image, item.display, labels),
                ))
            if running:
                index, item, old_future, new_future = running.popleft()
                record = ShadowRecord(index, item, old_future.result(), new_future.result())
                if record.old.ok and record.new.ok:
                    matching = time.perf_counter()
                    record.comparison = match(record.old.detections, record.new.detections, iou_threshold)
                    record.compare_seconds = time.perf_counter() - matching
                yield record


@dataclass(frozen=True)
class LatencyStats:
    """Per-call model latency of one version, in seconds."""

    calls: int
    p50: float | None
    p95: float | None
    mean: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> "LatencyStats":
        if not seconds:
            return cls(0, None, None, None)
        values = np.asarray(seconds, dtype=np.float64)
        return cls(len(values), float(np.percentile(values, 50)), float(np.percentile(values, 95)), float(values.mean()))


@dataclass(frozen=True)
class ShadowSummary:
    """Everything the gates and the reports need about a replay (old version = reference)."""

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

    @property
    def latency_ratio(self) -> float | None:
        """New p50 over old p50 (the median resists one slow outlier on small sets)."""
        if self.new_latency.p50 is None or not self.old_latency.p50:
            return None
        return self.new_latency.p50 / self.old_latency.p50

    @property
    def error_rate(self) -> float | None:
        """Share of readable images the new version failed on."""
        readable = self.images - self.unreadable
        return self.new_errors / readable if readable else None

    @property
    def p95_ratio(self) -> float | None:
        if self.new_latency.p95 is None or not self.old_latency.p95:
            return None
        return self.new_latency.p95 / self.old_latency.p95


@dataclass
class ShadowMetric:
    """``update(record)`` per image, then ``compute()``; the canary computes it over growing shares."""

    old: str
    new: str
    iou_threshold: float = 0.5
    records: list[ShadowRecord] = field(default_factory=list)

    def update(self, record: ShadowRecord) -> None:
        self.records.append(record)

    def reset(self) -> None:
        self.records.clear()

    def compute(self) -> ShadowSummary:
        agreement = AgreementMetric(self.iou_threshold)
        for record in self.records:
            if record.comparison is not None:
                agreement.add(record.comparison)
        readable = [r for r in self.records if r.input_error is None]
        return ShadowSummary(
            old=self.old,
            new=self.new,
            iou_threshold=self.iou_threshold,
            images=len(self.records),
            compared=sum(r.comparison is not None for r in self.records),
            unreadable=len(self.records) - len(readable),
            old_errors=sum(not r.old.ok for r in readable),
            new_errors=sum(not r.new.ok for r in readable),
            agreement=agreement.compute(),
            old_latency=LatencyStats.of([r.old.seconds for r in readable if r.old.ok]),
            new_latency=LatencyStats.of([r.new.seconds for r in readable if r.new.ok]),
        )


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
    labels: Sequence[str] | None = None,
    workers: int = 1,
    warm_up: bool = True,
    on_record=None,
) -> ShadowRun:
    """:func:`replay` to the end and summarise; ``on_record(record)`` is called as each image finishes."""
    metric = ShadowMetric(old.spec.ref, new.spec.ref, iou_threshold)
    started = time.perf_counter()
    for record in replay(inputs, old, new, iou_threshold=iou_threshold, labels=labels, workers=workers, warm_up=warm_up):
        metric.update(record)
        if on_record is not None:
            on_record(record)
    wall = time.perf_counter() - started
    summarising = time.perf_counter()
    summary = metric.compute()
    compare_seconds = time.perf_counter() - summarising + sum(r.compare_seconds for r in metric.records)
    return ShadowRun(metric.records, summary, wall, compare_seconds)
