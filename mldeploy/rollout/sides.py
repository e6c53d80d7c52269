"""Each side of a comparison: a version that runs on the image, or answers that are read.

Engines and the pair-runner ask a side for an answer and whether it is timed; they never ask which
kind it is. :class:`Version` runs a model (loaded on first use: on Ray, in the actor, never on the
driver); :class:`~mldeploy.capture.replay.RecordedAnswers` reads a capture's stored answers.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from mldeploy.errors import MldeployError
from mldeploy.models.base import Detector, ModelSpec
from mldeploy.pipeline import DetectionResult, ImageInput, run_detector

if TYPE_CHECKING:
    import numpy as np


class Side(Protocol):
    """One side of a comparison (or the one version of a detect run)."""

    spec: ModelSpec
    #: True: answers by running on the image, and its time is the model's; False: answers are read (the
    #: image is not needed, and the time is whatever was recorded).
    timed: bool

    def answer(self, image: "np.ndarray | None", item: ImageInput, labels: Sequence[str] | None = None,
               conf: float | None = None) -> DetectionResult: ...

    def load(self) -> None: ...

    def warm(self, image: "np.ndarray") -> None: ...

    def retime(self, image: "np.ndarray") -> float | None: ...


class Version:
    """A version that runs. ``load(spec)`` gives its Detector on first use (pins checked by the project)."""

    timed = True

    def __init__(self, spec: ModelSpec, load: Callable[[ModelSpec], Detector] | None = None, detector: Detector | None = None) -> None:
        self.spec, self._load, self._detector = spec, load, detector

    @cached_property
    def detector(self) -> Detector:
        if self._detector is not None:
            return self._detector
        if self._load is None:
            from mldeploy.models import load_detector

            return load_detector(self.spec)
        return self._load(self.spec)

    @property
    def min_input_side(self) -> int | None:
        return self.detector.min_input_side

    def load(self) -> None:
        """Load now (a model takes seconds: a caller may want to say so, and time it apart)."""
        self.detector  # noqa: B018 - the cached property loads

    def answer(self, image, item: ImageInput, labels: Sequence[str] | None = None, conf: float | None = None) -> DetectionResult:
        result = DetectionResult(item.display, self.spec.ref)
        try:
            result.detections, result.seconds = run_detector(self.detector, image, conf, labels)
        except MldeployError as exc:
            result.error = exc
        return result

    def warm(self, image) -> None:
        try:  # first-call costs (allocation, graph tracing) kept out of the figures; a failure shows in the timed run
            self.detector.detect(image)
        except Exception:
            pass

    def retime(self, image) -> float | None:
        try:
            return self.detector.timed_detect(image)[1]
        except Exception:  # it answered the first time; a failure now says nothing about its speed
            return None


def as_side(version: "Side | Detector") -> Side:
    """A loaded Detector as the side that runs it; a side as it is (library callers pass either)."""
    return Version(version.spec, detector=version) if isinstance(version, Detector) else version


def answer_full_size(side: Side, image, full: tuple[int, int], item: ImageInput, labels: Sequence[str] | None = None,
                     conf: float | None = None) -> DetectionResult:
    """``side``'s answer on an image decoded at a reduced size, with its boxes in the full image's pixels
    (``full``: the image's size as stored). Every engine's detect goes through here, so they agree."""
    result = side.answer(image, item, labels, conf)
    if result.ok and result.detections.image_size != full:
        result.detections = result.detections.resized(full)
    return result
