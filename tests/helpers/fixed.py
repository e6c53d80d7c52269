"""Fixed-latency sides: a real version's answers with latencies the test chooses, so that timing logic
(paired ratios, their intervals, inconclusive on few images) is tested without a wall clock. Sides are a
protocol (mldeploy.rollout.sides.Side): nothing in mldeploy is patched."""

from __future__ import annotations

from typing import Callable

from mldeploy.rollout.sides import Version


class FixedLatency(Version):
    """``detector``'s answers, each timed ``latency(item)`` seconds (a number: the same for every image)."""

    def __init__(self, detector, latency: float | Callable[[object], float]) -> None:
        super().__init__(detector.spec, detector=detector)
        self.latency = latency if callable(latency) else (lambda item: latency)
        self._last = None

    def answer(self, image, item, labels=None, conf=None):
        result = super().answer(image, item, labels, conf)
        result.seconds = self.latency(item) if result.ok else 0.0
        self._last = item
        return result

    def retime(self, image) -> float | None:
        return self.latency(self._last)
