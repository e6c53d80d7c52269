"""``mldeploy models validate``: check a version end to end: files, load, a test forward pass, pins."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mldeploy.errors import MldeployError
from mldeploy.models.base import ModelSpec
from mldeploy.models.registry import builtin_specs, missing_files_message


def test_image() -> np.ndarray:
    """A 640x480 BGR picture with texture and a red square: enough for a forward pass to mean something."""
    ys, xs = np.mgrid[0:480, 0:640]
    image = np.stack([(xs * 255 // 639), (ys * 255 // 479), ((xs + ys) % 256)], axis=-1).astype(np.uint8)
    image[180:300, 260:380] = (0, 0, 255)
    return image


@dataclass
class Validation:
    ref: str
    problems: list[str] = field(default_factory=list)
    loaded: bool = False
    detections: int | None = None  # boxes at any score (the forward pass runs with threshold 0)
    over_threshold: int | None = None  # ...of which at or over the version's threshold
    threshold: float | None = None
    milliseconds: float | None = None
    pins: str = ""  # "pinned now", "unchanged", or "" when not checked

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(project, spec: ModelSpec, image: np.ndarray, pin: bool = True) -> Validation:
    """Every check that applies, in order; a failed step stops the steps that depend on it."""
    result = Validation(spec.ref)
    where = str(project.config_path) if project.config_path else "mldeploy.toml"
    missing = spec.missing_files()
    if missing and spec.ref in {s.ref for s in builtin_specs()}:  # the zoo's files: say where they go, not "fix mldeploy.toml"
        result.problems.append(missing_files_message(spec, missing))
        return result
    for role, path in spec.files.items():
        if not Path(path).exists():
            result.problems.append(f"{spec.ref}: {role} = \"{path}\": no such file or folder; fix the path in {where} "
                                   "(relative to that file's folder) or put the file there")
    if result.problems:
        return result
    try:
        detector = project.load(spec)  # checks the pins first
        result.loaded = True
        result.pins = "unchanged" if project.store().pins(spec.ref) else ""
    except MldeployError as exc:
        result.problems.append(f"{spec.ref}: {exc}" if not str(exc).startswith(spec.ref) else str(exc))
        return result
    try:
        started = time.perf_counter()
        detections = detector.detect(image, conf=0.0)
        result.milliseconds = (time.perf_counter() - started) * 1000
        result.detections = len(detections)
        result.over_threshold = int((detections.confidence >= spec.conf).sum())
        result.threshold = spec.conf
        strangers = sorted({str(label) for label in detections.label} - set(spec.classes))
        if strangers:
            result.problems.append(f"{spec.ref}: the test forward pass gave labels not in its class list: {', '.join(strangers)}; check names / label_map")
    except Exception as exc:  # the output was malformed: Detections refuses it, or the backend raised
        result.problems.append(f"{spec.ref}: the test forward pass failed: {exc}; check input_size, layout and the class list against the model")
        return result
    if pin and not result.pins:
        project.pin(spec)
        result.pins = "pinned now"
    return result
