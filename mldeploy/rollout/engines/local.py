"""The local engine: this process, a thread pool that decodes ahead, and one inference thread.

One decode loop (:func:`decoded`) serves both jobs: :meth:`LocalEngine.detect` runs one side over the
images (``detect``, ``eval``), :meth:`LocalEngine.replay` runs a :class:`~mldeploy.rollout.pairs.Pair`
(``shadow``, ``canary``). Each image is decoded once, on an I/O thread, ahead of time, so decoding
overlaps inference; every Detector holds its own lock and times its forward pass under it, so the
answers are exactly those of a one-at-a-time loop and waiting for a lock never counts as latency.
"""

from __future__ import annotations

import contextlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator, Sequence

from mldeploy.errors import MldeployError
from mldeploy.pipeline import AnnotatedImageWriter, DetectionResult, ImageInput, read_input_at_least
from mldeploy.rollout.pairs import Pair
from mldeploy.rollout.shadow import ShadowRecord
from mldeploy.rollout.sides import Side, answer_full_size

#: Images decoded ahead of the one being answered.
PREFETCH = 4


def decoded(items: Iterable[ImageInput], pool: ThreadPoolExecutor, min_side: int | None = None,
            prefetch: int = PREFETCH) -> Iterator[tuple[ImageInput, Future]]:
    """Each item with the future of its decoding (``(image, full size)``), ``prefetch`` ahead, in order."""
    source = iter(items)
    pending: deque[tuple[ImageInput, Future]] = deque()

    def queue_next() -> None:
        item = next(source, None)
        if item is not None:
            pending.append((item, pool.submit(read_input_at_least, item, min_side)))

    for _ in range(max(1, prefetch)):
        queue_next()
    while pending:
        item, future = pending.popleft()
        queue_next()
        yield item, future


class LocalEngine:
    """Runs in this process. ``workers=2`` runs a pair's two sides side by side on two threads: faster
    only when a version leaves a core idle (MTCNN), slower for OpenCV models, which already use every
    core (benchmarks/shadow_overhead.py), and it inflates both latencies."""

    name = "local"
    loads_here = True  # prepare() loads the versions in this process

    def __init__(self, workers: int = 1, prefetch: int = PREFETCH) -> None:
        self.workers, self.prefetch = max(1, workers), prefetch

    @property
    def settings(self) -> dict:
        return {"workers": self.workers}

    def session(self):
        return contextlib.nullcontext(self)

    def bench(self, job):
        """Measure one bench job in a fresh process of this machine (its memory its own, then gone)."""
        from mldeploy.rollout.bench import measure_in_a_fresh_process

        return measure_in_a_fresh_process(job)

    def prepare(self, *sides: Side) -> None:
        """Load the versions that run here, once (pins checked by the project's loader)."""
        for side in sides:
            if side.timed:
                side.load()

    def detect(self, side: Side, items: Iterable[ImageInput], *, conf: float | None = None, labels: Sequence[str] | None = None,
               writer: AnnotatedImageWriter | None = None, reduced_decode: bool = True) -> Iterator[DetectionResult]:
        """``side`` over ``items``, one result per image in input order; a bad image is a failed result.

        With ``reduced_decode``, a JPEG is decoded at the smallest DCT scale that keeps both sides at the
        detector's ``min_input_side``, and the boxes are mapped back to the full image
        (benchmarks/reduced_decode.py measures the agreement and the speed). Annotated copies are drawn on
        the full image, so a run with a ``writer`` decodes every image in full.
        """
        min_side = side.min_input_side if reduced_decode and writer is None else None
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mldeploy-io") as pool:
            finished: deque[tuple[DetectionResult, Future | None]] = deque()
            for item, decoding in decoded(items, pool, min_side, self.prefetch):
                saving = None
                try:
                    image, full = decoding.result()
                except MldeployError as exc:
                    result = DetectionResult(item.display, side.spec.ref, error=exc)
                else:
                    result = answer_full_size(side, image, full, item, labels, conf)
                    if result.ok and writer is not None:
                        saving = pool.submit(writer.save, item, image, result.detections)
                finished.append((result, saving))
                while finished and (finished[0][1] is None or finished[0][1].done()):
                    yield _settle(*finished.popleft())
            while finished:
                yield _settle(*finished.popleft())

    def replay(self, pair: Pair, items: Iterable[ImageInput], offset: int = 0) -> Iterator[ShadowRecord]:
        """``pair`` on every image: one :class:`ShadowRecord` per image, in order, numbered from ``offset``.

        Two images are in flight: while the inference thread answers image k, this thread compares k-1.
        """
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mldeploy-io") as io_pool, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="mldeploy-infer") as infer_pool, \
                contextlib.ExitStack() as stack:
            sides_pool = stack.enter_context(ThreadPoolExecutor(max_workers=2, thread_name_prefix="mldeploy-side")) if self.workers > 1 else None
            running: deque[tuple[int, ImageInput, Future]] = deque()

            def answer(index: int, image, item: ImageInput) -> dict:
                answers = pair.answer(index, image, item, sides_pool)
                pair.retime(index, image, answers)  # on the inference thread: nothing else runs while it is timed again
                return answers

            def finish() -> ShadowRecord:
                index, item, answering = running.popleft()
                return pair.complete(index, item, answering.result())

            for index, (item, decoding) in enumerate(decoded(items, io_pool, None, self.prefetch), offset):
                try:
                    image = decoding.result()[0]
                except MldeployError as exc:
                    yield pair.unreadable(index, item, exc)
                    continue
                running.append((index, item, infer_pool.submit(answer, index, image, item)))
                if len(running) == 2:
                    yield finish()
            while running:
                yield finish()


def _settle(result: DetectionResult, saving: Future | None) -> DetectionResult:
    if saving is not None:
        try:
            result.saved_to = saving.result()
        except MldeployError as exc:
            result.error = exc
    return result


def make(project=None, options=None) -> LocalEngine:
    """The :data:`~mldeploy.rollout.engines.ENGINES` factory: ``options`` is the number of inference workers."""
    return LocalEngine(workers=options or 1)


def detect_images(inputs: Iterable[ImageInput], detector, **options) -> Iterator[DetectionResult]:
    """``detector`` (a loaded Detector, or a side) over ``inputs`` on the local engine: :meth:`LocalEngine.detect`."""
    from mldeploy.rollout.sides import as_side

    return LocalEngine().detect(as_side(detector), inputs, **options)


def replay(inputs: Iterable[ImageInput], old, new, *, workers: int = 1, **pair_options) -> Iterator[ShadowRecord]:
    """``old`` and ``new`` (loaded Detectors, or sides) on every image on the local engine, one record per
    image in order; ``pair_options`` are :class:`~mldeploy.rollout.pairs.Pair`'s (iou_threshold, labels, warm_up...)."""
    from mldeploy.rollout.sides import as_side

    return LocalEngine(workers).replay(Pair(as_side(old), as_side(new), **pair_options), inputs)
