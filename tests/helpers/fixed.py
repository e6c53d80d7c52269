"""Fixed-latency sides: a real version's answers with a latency the test chooses, so that timing logic
(paired ratios, their intervals, inconclusive on few images) is tested without a wall clock. Sides are a
protocol (mldeploy.rollout.sides.Side): nothing in mldeploy is patched."""

from __future__ import annotations

from mldeploy.rollout.sides import Version


class FixedLatency(Version):
    """``detector``'s answers, each timed ``seconds`` (and the same when re-timed)."""

    def __init__(self, detector, seconds: float) -> None:
        super().__init__(detector.spec, detector=detector)
        self.seconds = seconds

    def answer(self, image, item, labels=None, conf=None):
        result = super().answer(image, item, labels, conf)
        result.seconds = self.seconds if result.ok else 0.0
        return result

    def retime(self, image) -> float | None:
        return self.seconds
