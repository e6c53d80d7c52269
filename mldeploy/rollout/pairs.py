"""The pair-runner: the fairness rules of a comparison, written once for every engine.

Both the local engine's threads and the Ray engine's actors call :meth:`Pair.answer` where the image is
decoded, and the driver calls :meth:`Pair.complete` to fill in the sides that do not run (a capture's
recorded answers) and compare. The rules:

* **Warm-up**: each side that runs is called once, untimed, on the first readable image, so that
  first-call costs (memory allocation, graph tracing) do not land in the latency figures.
* **Alternating order**: one after the other, whichever version runs second finds the caches warm
  (the same network measured 5-10% faster as "new"), so the new version runs first on every other
  image (benchmarks/latency_bias.py shows the bias before and after).
* **Re-timing outliers**: interference (the scheduler, another process) only ever adds time. A pair
  whose ratio is an outlier (one version over 1.5x the other) is timed once more and each version keeps
  its faster time, the way ``timeit`` reports the minimum; at most two images and a quarter of the rest
  are re-timed, since beyond that the difference is the versions', not noise. The answers are the first
  run's (the models are deterministic).
* **By position, not by detector**: in a self-comparison old and new are the same loaded model, and
  each side still runs (and is timed) on its own.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from mldeploy.compare import DRIFT_IOU, failed_comparison, match
from mldeploy.errors import MldeployError
from mldeploy.pipeline import DetectionResult, ImageInput
from mldeploy.rollout.shadow import ShadowRecord
from mldeploy.rollout.sides import Side

if TYPE_CHECKING:
    import numpy as np

#: A pair of latencies further apart than this is timed again (noise only ever adds time).
RETIME_RATIO = 1.5
#: Most images that may be re-timed: a few, plus a quarter of those answered so far (more outliers than
#: that are a real difference, not noise). The few matter on a small set, where one hiccup is the p95.
RETIME_FEW, RETIME_SHARE = 2, 0.25

SIDES = ("old", "new")


@dataclass
class Pair:
    """Two sides compared on the same images, and the state the fairness rules keep (warmed, re-timed)."""

    old: Side
    new: Side
    iou_threshold: float = 0.5
    drift_iou: float = DRIFT_IOU
    labels: Sequence[str] | None = None  # compare only these labels (both sides' other boxes are dropped first)
    warm_up: bool = True
    alternate: bool = True  # False only to measure the bias it removes
    _warm: bool = field(default=False, repr=False)
    _answered: int = field(default=0, repr=False)
    _retimed: int = field(default=0, repr=False)

    @property
    def recorded(self) -> bool:
        """The old side's answers are read, not run: there is no latency pair to judge."""
        return not self.old.timed

    def order(self, index: int) -> tuple[str, str]:
        """Which side runs first on image ``index``."""
        return ("new", "old") if self.alternate and index % 2 == 1 else ("old", "new")

    def answer(self, index: int, image: "np.ndarray", item: ImageInput, pool: Executor | None = None) -> dict[str, DetectionResult]:
        """Run the sides that run on one decoded image, warmed up, in this image's order. ``pool``: run
        them side by side on its threads (each Detector holds its own lock, so this never changes an
        answer). Then :meth:`retime`."""
        timed = [name for name in self.order(index) if getattr(self, name).timed]
        if self.warm_up and not self._warm:
            self._warm = True
            for name in timed:
                getattr(self, name).warm(image)
        if pool is not None:
            futures = {name: pool.submit(getattr(self, name).answer, image, item, self.labels) for name in timed}
            return {name: future.result() for name, future in futures.items()}
        return {name: getattr(self, name).answer(image, item, self.labels) for name in timed}

    def retime(self, index: int, image: "np.ndarray", answers: dict[str, DetectionResult]) -> None:
        """Time both sides once more on an outlier pair, in the same order, within the budget above; each
        keeps its faster time. Called right after :meth:`answer`, where the image was answered, so that
        nothing else runs while a pair is timed again."""
        if len(answers) != 2 or not all(a.ok for a in answers.values()):
            return
        self._answered += 1
        if not (self._outlier(answers) and self._retimed < RETIME_FEW + RETIME_SHARE * self._answered):
            return
        self._retimed += 1
        for name in self.order(index):
            seconds = getattr(self, name).retime(image)
            if seconds is not None:
                answers[name].seconds = min(answers[name].seconds, seconds)

    @staticmethod
    def _outlier(answers: dict[str, DetectionResult]) -> bool:
        a, b = answers["old"].seconds, answers["new"].seconds
        return min(a, b) > 0 and max(a, b) / min(a, b) > RETIME_RATIO

    def complete(self, index: int, item: ImageInput, answers: dict[str, DetectionResult]) -> ShadowRecord:
        """The record of one image: the sides that did not run answer now (they need no image), then the
        two answers are matched."""
        for name in SIDES:
            if name not in answers:
                answers[name] = getattr(self, name).answer(None, item, self.labels)
        record = ShadowRecord(index, item, answers["old"], answers["new"])
        if record.old.ok:
            matching = time.perf_counter()
            record.comparison = (match(record.old.detections, record.new.detections, self.iou_threshold, self.drift_iou) if record.new.ok
                                 else failed_comparison(record.old.detections, self.drift_iou))
            record.compare_seconds = time.perf_counter() - matching
        return record

    def unreadable(self, index: int, item: ImageInput, error: MldeployError) -> ShadowRecord:
        """The record of an image that could not be read: neither side ran."""
        return ShadowRecord(index, item, DetectionResult(item.display, self.old.spec.ref, error=error),
                            DetectionResult(item.display, self.new.spec.ref, error=error), input_error=error)
