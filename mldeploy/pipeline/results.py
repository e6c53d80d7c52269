"""What a detector said about an image (:class:`DetectionResult`), one guarded forward pass
(:func:`run_detector`), and the totals of a detect run (:class:`RunSummary`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mldeploy.detections import Detections
from mldeploy.errors import InferenceError, MldeployError
from mldeploy.models.base import Detector


@dataclass
class DetectionResult:
    """What one model said about one image (or why it could not say)."""

    source: str
    model: str
    detections: Detections | None = None
    error: MldeployError | None = None
    seconds: float = 0.0
    saved_to: Path | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_detector(detector: Detector, image: np.ndarray, conf: float | None = None, labels: Sequence[str] | None = None) -> tuple[Detections, float]:
    """One guarded forward pass: any exception from the model becomes an :class:`InferenceError`."""
    try:
        detections, seconds = detector.timed_detect(image, conf)
    except MldeployError:
        raise
    except Exception as exc:
        raise InferenceError(f"{detector.spec.ref} failed on this image: {type(exc).__name__}: {exc}") from exc
    return (detections.filter(labels=labels) if labels else detections), seconds



@dataclass
class RunSummary:
    """Totals over a run, fed one result at a time."""

    model: str
    images: int = 0
    failed: int = 0
    detections: int = 0
    per_label: Counter = field(default_factory=Counter)
    inference_seconds: float = 0.0
    wall_seconds: float = 0.0  # the run, after the model loaded
    load_seconds: float = 0.0

    def update(self, result: DetectionResult) -> None:
        self.images += 1
        if not result.ok:
            self.failed += 1
            return
        self.inference_seconds += result.seconds
        if result.detections is not None:
            self.detections += len(result.detections)
            self.per_label.update(result.detections.counts())

    @property
    def succeeded(self) -> int:
        return self.images - self.failed

    @property
    def images_per_second(self) -> float:
        return self.succeeded / self.wall_seconds if self.wall_seconds > 0 else 0.0
