"""The model spec (what a name@version means) and the Detector interface every backend implements."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # keep NumPy out of the CLI's start-up path
    import numpy as np

    from mldeploy.detections import Detections


@dataclass(frozen=True)
class ModelSpec:
    """One version of one model: which backend runs it, with which files and settings.

    Attributes:
        name: model name, e.g. ``faces``.
        version: version name, e.g. ``v1``.
        backend: key into :data:`mldeploy.models.registry.BACKENDS` (its files and options).
        classes: the labels the model can emit, in class-id order.
        conf: default confidence threshold.
        files: role -> path of every file the backend reads (``cfg``, ``weights``...).
        options: backend settings (thresholds, input size...).
        description: one line for ``mldeploy models``.
        detector: ``"module:Class"`` of a Detector of your own that runs this version instead of the
            backend's class (``detector = ...`` in mldeploy.toml); empty for the backend's.
    """

    name: str
    version: str
    backend: str
    classes: tuple[str, ...]
    conf: float = 0.5
    files: Mapping[str, Path] = field(default_factory=dict, hash=False, compare=False)
    options: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    description: str = ""
    detector: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def missing_files(self) -> list[Path]:
        return [p for p in self.files.values() if not Path(p).exists()]  # a SavedModel is a folder

    @property
    def cache_key(self) -> tuple:
        """Identity for the load-once cache: same backend, files and settings -> same loaded model."""
        return (self.ref, self.backend, self.detector, tuple(sorted((k, str(v)) for k, v in self.files.items())), repr(sorted(self.options.items())))


class Detector(ABC):
    """A loaded model. Call :meth:`detect`; backends implement :meth:`_predict`.

    A Detector is safe to share between threads: OpenCV DNN networks (and Haar cascades) give wrong
    boxes when two threads run them at once, so every call holds this instance's lock. The expensive
    part, loading, happens once in ``__init__``; use :func:`mldeploy.models.load_detector` to get the
    process-wide instance instead of constructing one per call.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._stages: dict[str, float] = {}
        self._last = 0.0

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    @property
    def min_input_side(self) -> int | None:
        """The smallest side an image may be decoded at without changing this model's answers, or None
        for the full image. Models that resize their input anyway say twice their input size, so the
        resize still shrinks by half or more."""
        return None

    def detect(self, image: "np.ndarray", conf: float | None = None) -> "Detections":
        """Find objects in an 8-bit BGR image; keep those scoring at least ``conf`` (default: the spec's)."""
        return self.timed_detect(image, conf)[0]

    def timed_detect(self, image: "np.ndarray", conf: float | None = None) -> tuple["Detections", float]:
        """:meth:`detect`, and the seconds the model itself took (timed under the lock, so time spent
        waiting for another thread's call is not counted as this call's latency)."""
        detections, seconds, _ = self.staged_detect(image, conf)
        return detections, seconds

    def staged_detect(self, image: "np.ndarray", conf: float | None = None) -> tuple["Detections", float, dict[str, float]]:
        """:meth:`timed_detect`, and where the time went: ``{"pre", "forward", "post"}`` seconds for a
        backend that marks its stages (:meth:`mark`), else ``{"model": seconds}``."""
        threshold = self.spec.conf if conf is None else float(conf)
        with self._lock:
            started = self._last = time.perf_counter()
            self._stages = {}
            detections = self._predict(image, threshold)
            ended = time.perf_counter()
            stages, self._stages = self._stages, {}
        if stages:
            stages["post"] = stages.get("post", 0.0) + ended - self._last
        else:
            stages = {"model": ended - started}
        detections = detections.filter(min_confidence=threshold)
        keep = self.spec.options.get("keep")
        if keep:  # a version's class filter (mldeploy.toml: keep = ["person", "car"])
            detections = detections.filter(labels=keep)
        return detections, ended - started, stages

    def mark(self, stage: str) -> None:
        """Inside :meth:`_predict`: the time since the call began (or the last mark) was spent on
        ``stage`` (``pre``, ``forward``); what follows the last mark is ``post``. A perf_counter call."""
        now = time.perf_counter()
        self._stages[stage] = self._stages.get(stage, 0.0) + now - self._last
        self._last = now

    @abstractmethod
    def _predict(self, image: "np.ndarray", conf: float) -> "Detections":
        """Run the model once. Called under the instance lock."""


def shrink_to(image: "np.ndarray", max_side: int) -> tuple["np.ndarray", float]:
    """``image`` scaled down so its longest side is at most ``max_side``, and the scale (1.0: untouched).

    Backends that search the whole image (Haar, HOG, MTCNN) work on the shrunk copy and divide their
    boxes by the scale: one huge upload then costs bounded time and memory.
    """
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return image, 1.0
    import cv2  # not at import time: the CLI's start-up stays light

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale
