"""Latency figures that can be trusted: per-version percentiles, and paired ratios with a confidence interval.

Both versions answer the same images, so each image gives a pair ``(old seconds, new seconds)``. A
ratio gate (new p50 / old p50, new p95 / old p95) is judged on those pairs with a bootstrap: the images
are resampled with replacement, the ratio recomputed each time, and the 5th and 95th percentiles of
those ratios bound it (a 90% interval). A gate passes when the whole interval is within its bound,
fails when the whole interval is beyond it, and is *inconclusive* otherwise, or when there are fewer
than :data:`MIN_PAIRS` pairs: a few images cannot show a slowdown, nor its absence. A slowdown under
:data:`FLOOR_SECONDS` at the percentile judged passes whatever its ratio: on a model that answers in
a fraction of a millisecond, scheduler noise alone makes ratios of 2.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

#: Fewest paired images a latency ratio is judged on.
MIN_PAIRS = 5
#: A slowdown under this (seconds per image, at the percentile judged) never fails a ratio gate.
#: Measured: twins of a 0.5 ms network differ by up to 2.5 ms at p95 (8 images: the p95 is one
#: scheduler hiccup); 5 ms keeps them quiet and is small beside any real detector's latency.
FLOOR_SECONDS = 0.005
RESAMPLES = 1000
CONFIDENCE = 0.90
_SEED = 20261125  # fixed: the same run gives the same interval every time it is summarised


@dataclass(frozen=True)
class LatencyStats:
    """Per-call model latency of one version, in seconds."""

    calls: int
    p50: float | None
    p95: float | None
    mean: float | None

    @classmethod
    def of(cls, seconds: Sequence[float], calls: int | None = None, total: float | None = None) -> "LatencyStats":
        """Percentiles of ``seconds``; ``calls`` and ``total`` when those are a sample of more calls."""
        if not len(seconds):
            return cls(0, None, None, None) if not calls else cls(calls, None, None, total / calls)
        values = np.asarray(seconds, dtype=np.float64)
        calls = len(values) if calls is None else calls
        mean = float(values.mean()) if total is None else total / calls
        return cls(calls, float(np.percentile(values, 50)), float(np.percentile(values, 95)), mean)


#: Images whose latencies a replay keeps: every one up to this many, a uniform sample of this many past
#: it. 10 000 pairs put ~500 images above the p95 and keep the bootstrap under a second.
SAMPLE_SIZE = 10_000
_MASK = (1 << 64) - 1


def _priority(index: int) -> int:
    """A fixed pseudo-random rank of image ``index`` (splitmix64): which images a sample keeps depends on
    nothing but their numbers, so two engines, or shards merged in any order, keep the same ones."""
    z = (index * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


@dataclass
class LatencySample:
    """Both versions' latencies over a replay in bounded memory, *mergeable* (``a + b``).

    Calls and means are exact; percentiles and the paired ratios come from the images of lowest
    :func:`_priority` (all of them while there are at most ``size``): a sample that is the same
    whichever order the images arrive in. ``nan`` marks a version that did not answer an image.
    """

    size: int = field(default_factory=lambda: SAMPLE_SIZE)  # read when made: a test may lower the module's figure
    old_calls: int = 0
    new_calls: int = 0
    old_total: float = 0.0
    new_total: float = 0.0
    _heap: list[tuple[int, int, float, float]] = field(default_factory=list)  # (-priority, index, old s, new s)

    def add(self, index: int, old: float | None, new: float | None) -> None:
        if old is not None:
            self.old_calls, self.old_total = self.old_calls + 1, self.old_total + old
        if new is not None:
            self.new_calls, self.new_total = self.new_calls + 1, self.new_total + new
        if old is None and new is None:
            return
        entry = (-_priority(index), index, math.nan if old is None else old, math.nan if new is None else new)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:  # a lower priority than the highest kept
            heapq.heapreplace(self._heap, entry)

    def __add__(self, other: "LatencySample") -> "LatencySample":
        merged = LatencySample(self.size, self.old_calls + other.old_calls, self.new_calls + other.new_calls,
                               self.old_total + other.old_total, self.new_total + other.new_total)
        merged._heap = heapq.nlargest(self.size, self._heap + other._heap)
        heapq.heapify(merged._heap)
        return merged

    @property
    def sampled(self) -> bool:
        """Some images' latencies were left out of the percentiles (more than ``size`` images)."""
        return len(self._heap) < max(self.old_calls, self.new_calls)

    def _values(self) -> np.ndarray:
        rows = sorted(self._heap, key=lambda e: e[1])  # image order: the bootstrap's resampling is seeded on it
        return np.array([(e[2], e[3]) for e in rows], dtype=np.float64).reshape(-1, 2)

    def stats(self) -> tuple["LatencyStats", "LatencyStats"]:
        values = self._values()
        return (LatencyStats.of(values[:, 0][~np.isnan(values[:, 0])], self.old_calls, self.old_total),
                LatencyStats.of(values[:, 1][~np.isnan(values[:, 1])], self.new_calls, self.new_total))

    def pairs(self) -> np.ndarray:
        """``(old s, new s)`` of the sampled images both versions answered, in image order."""
        values = self._values()
        return values[~np.isnan(values).any(axis=1)]


@dataclass(frozen=True)
class RatioEstimate:
    """A latency ratio (new / old at one percentile) over ``pairs`` images, with its 90% interval, and
    the difference (new - old at that percentile, seconds)."""

    value: float
    low: float
    high: float
    pairs: int
    slowdown: float = float("inf")

    @property
    def negligible(self) -> bool:
        """The new version is slower by less than the floor at this percentile."""
        return self.slowdown <= FLOOR_SECONDS

    @property
    def conclusive(self) -> bool:
        return self.pairs >= MIN_PAIRS


def paired_ratio(pairs: np.ndarray, percentile: float, resamples: int = RESAMPLES) -> RatioEstimate | None:
    """``percentile`` of the new latencies over that of the old ones, on paired ``(n, 2)`` seconds.

    ``None`` when there are no pairs or the old version took no time at all.
    """
    pairs = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
    n = len(pairs)
    if not n:
        return None
    old, new = pairs[:, 0], pairs[:, 1]
    base = np.percentile(old, percentile)
    if base <= 0:
        return None
    value = float(np.percentile(new, percentile) / base)
    rng = np.random.default_rng(_SEED + n)
    ratios = []
    # Bound the memory of one step: at most 500k indices, so the index array, the two resampled copies and
    # percentile's own take ~16 MB together (4M indices took 96 MB, a driver's peak grew with the images).
    chunk = max(1, min(resamples, 500_000 // n))
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        old_q = np.percentile(old[idx], percentile, axis=1)
        new_q = np.percentile(new[idx], percentile, axis=1)
        ratios.append(new_q / np.maximum(old_q, 1e-12))
    ratios = np.concatenate(ratios)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return RatioEstimate(value, float(min(low, value)), float(max(high, value)), n, float(np.percentile(new, percentile) - base))
