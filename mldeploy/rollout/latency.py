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

from dataclasses import dataclass
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
    def of(cls, seconds: Sequence[float]) -> "LatencyStats":
        if not len(seconds):
            return cls(0, None, None, None)
        values = np.asarray(seconds, dtype=np.float64)
        return cls(len(values), float(np.percentile(values, 50)), float(np.percentile(values, 95)), float(values.mean()))


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
    chunk = max(1, min(resamples, 4_000_000 // n))  # bound the memory of one step: at most 4M indices
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        old_q = np.percentile(old[idx], percentile, axis=1)
        new_q = np.percentile(new[idx], percentile, axis=1)
        ratios.append(new_q / np.maximum(old_q, 1e-12))
    ratios = np.concatenate(ratios)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return RatioEstimate(value, float(min(low, value)), float(max(high, value)), n, float(np.percentile(new, percentile) - base))
