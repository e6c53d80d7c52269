"""Drift: how the distribution of what a model answers (and of what it is asked) moved, feature by
feature, with the population stability index (PSI).

Two comparisons (``mldeploy drift``):

- **two versions on the same images** (image files, or a capture's images with its recorded answers as
  the reference): the inputs are the same by construction, so any drift is the model's;
- **two time windows of a capture, one version**: the answers recorded in each window, and the inputs
  too (image size, brightness), so "the traffic changed" can be told from "the model changed".

Features: per image, the boxes it got (0, 1, ..., 9, 10 or more) and, for a capture, its megapixels and
mean brightness; per box, its class, confidence, area (a share of the image) and aspect (log2 of
width/height). A numeric feature is cut into ten bins at the reference's deciles; a categorical one
bins by value. PSI = sum over bins of (current - reference) x ln(current / reference), shares floored
at 0.0001. The usual bands: under 0.1 stable, 0.1 to 0.25 moderate, over 0.25 a major shift.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from mldeploy.detections import Detections
from mldeploy.errors import UsageError

#: PSI bands: under MODERATE stable, up to MAJOR moderate, above a major shift.
MODERATE, MAJOR = 0.1, 0.25
#: Fewer values than this on a side and a feature's PSI is not judged (inconclusive).
MIN_VALUES = 30
FLOOR = 1e-4
BINS = 10

#: (name, kind, what, categorical): every feature, in report order.
FEATURES = (
    ("boxes_per_image", "output", "boxes an image got", True),
    ("class", "output", "class of each box", True),
    ("confidence", "output", "confidence of each box", False),
    ("box_area", "output", "box area, a share of the image", False),
    ("box_aspect", "output", "log2 of a box's width / height", False),
    ("megapixels", "input", "image size, megapixels", False),
    ("brightness", "input", "mean brightness of the image, 0-255", False),
)
KINDS = {name: kind for name, kind, _, _ in FEATURES}


@dataclass
class Sample:
    """One side's feature values."""

    name: str  # what it is: faces@v2, or faces@v1 2026-11-01..2026-11-02
    values: dict[str, list] = field(default_factory=lambda: {name: [] for name, *_ in FEATURES})
    images: int = 0

    def add_answer(self, d: Detections) -> None:
        self.images += 1
        self.values["boxes_per_image"].append(min(len(d), 10))
        w, h = d.image_size
        area = max(w * h, 1)
        for (x1, y1, x2, y2), conf, label in zip(d.xyxy.tolist(), d.confidence.tolist(), d.label):
            bw, bh = max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)
            self.values["class"].append(str(label))
            self.values["confidence"].append(float(conf))
            self.values["box_area"].append(bw * bh / area)
            self.values["box_aspect"].append(math.log2(bw / bh))

    def add_input(self, width: int, height: int, brightness: float) -> None:
        self.values["megapixels"].append(width * height / 1e6)
        self.values["brightness"].append(float(brightness))


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # output or input
    psi: float | None  # None: too few values on a side
    reference_n: int
    current_n: int
    bins: tuple[str, ...]  # bin names (categories, or numeric edges)
    reference: tuple[float, ...]  # shares per bin
    current: tuple[float, ...]

    @property
    def band(self) -> str:
        if self.psi is None:
            return "too few values"
        return "stable" if self.psi < MODERATE else ("moderate" if self.psi <= MAJOR else "major")

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "psi": None if self.psi is None else round(self.psi, 4), "band": self.band,
                "reference_n": self.reference_n, "current_n": self.current_n,
                "bins": list(self.bins), "reference": [round(v, 4) for v in self.reference], "current": [round(v, 4) for v in self.current]}


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    """The population stability index of two share vectors (each summing to 1)."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), FLOOR)
    c = np.maximum(np.asarray(current, dtype=np.float64), FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)


def compare_feature(name: str, reference: list, current: list) -> FeatureDrift:
    """One feature's drift: categorical features bin by value, numeric ones at the reference's deciles."""
    kind = KINDS[name]
    categorical = next(c for n, _, _, c in FEATURES if n == name)
    if categorical:
        cats = sorted({str(v) for v in reference} | {str(v) for v in current}, key=lambda v: (len(v), v) if v.isdigit() else (99, v))
        index = {c: i for i, c in enumerate(cats)}
        r = np.bincount([index[str(v)] for v in reference], minlength=len(cats)).astype(np.float64)
        c = np.bincount([index[str(v)] for v in current], minlength=len(cats)).astype(np.float64)
        bins = tuple("10+" if name == "boxes_per_image" and v == "10" else v for v in cats)
    else:
        ref = np.asarray(reference, dtype=np.float64)
        cur = np.asarray(current, dtype=np.float64)
        if len(ref):
            edges = np.unique(np.quantile(ref, np.linspace(0, 1, BINS + 1)[1:-1]))
        else:
            edges = np.array([], dtype=np.float64)
        r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1).astype(np.float64)
        c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1).astype(np.float64)
        bounds = ["-inf", *[f"{e:.4g}" for e in edges], "inf"]
        bins = tuple(f"{a}..{b}" for a, b in zip(bounds, bounds[1:]))
    value = psi(_shares(r), _shares(c)) if min(len(reference), len(current)) >= MIN_VALUES else None
    return FeatureDrift(name, kind, value, len(reference), len(current), bins, tuple(_shares(r).tolist()), tuple(_shares(c).tolist()))


@dataclass
class DriftReport:
    """Two samples compared feature by feature, and what the comparison was."""

    mode: str  # versions or windows
    reference: Sample
    current: Sample
    features: list[FeatureDrift]
    max_psi: float
    same_inputs: bool  # versions on the same images: input drift is nothing by construction
    settings: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def judged(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.kind == "output"]

    @property
    def failed(self) -> list[FeatureDrift]:
        return [f for f in self.judged if f.psi is not None and f.psi > self.max_psi]

    @property
    def inconclusive(self) -> list[FeatureDrift]:
        return [f for f in self.judged if f.psi is None]

    @property
    def input_shift(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.kind == "input" and f.psi is not None and f.psi >= MODERATE]

    @property
    def status(self) -> str:
        if self.failed:
            return "fail"
        if self.inconclusive and not any(f.psi is not None for f in self.judged):
            return "inconclusive"
        return "pass"

    def cause(self) -> str:
        """What moved: the model, the traffic, or nothing worth a look."""
        moved = [f for f in self.judged if f.psi is not None and f.psi >= MODERATE]
        if not moved:
            return "the outputs are stable"
        named = ", ".join(f"{f.feature} {f.psi:.2f}" for f in moved)
        if self.same_inputs:
            return f"the model changed: on the same images, {named}"
        if self.input_shift:
            inputs = ", ".join(f"{f.feature} {f.psi:.2f}" for f in self.input_shift)
            return f"the traffic changed: the inputs drifted ({inputs}) and the outputs followed ({named})"
        return f"the model changed, or what the traffic shows did: the inputs are stable, the outputs drifted ({named})"

    def headline(self) -> str:
        word = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}[self.status]
        what = f"{self.current.name} against {self.reference.name}"
        if self.status == "fail":
            worst = max(self.failed, key=lambda f: f.psi)
            return f"{word}: {worst.feature} PSI {worst.psi:.2f} > --max-psi {self.max_psi:g}; {self.cause()} ({what})"
        if self.status == "inconclusive":
            return f"{word}: fewer than {MIN_VALUES} values on a side for every output feature ({what})"
        return f"{word}: every output feature's PSI <= {self.max_psi:g}; {self.cause()} ({what})"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "reference": {"name": self.reference.name, "images": self.reference.images},
                "current": {"name": self.current.name, "images": self.current.images}, "max_psi": self.max_psi,
                "verdict": {"status": self.status, "headline": self.headline(), "cause": self.cause(),
                            "deciding": [f.feature for f in self.failed]},
                "features": [f.to_dict() for f in self.features], "settings": self.settings, "wall_seconds": round(self.wall_seconds, 3)}


def compare(reference: Sample, current: Sample, *, mode: str, max_psi: float = MAJOR, same_inputs: bool = False,
            settings: dict | None = None) -> DriftReport:
    if not 0 < max_psi:
        raise UsageError(f"--max-psi {max_psi:g}: must be above 0 (the bands are 0.1 and 0.25)")
    features = [compare_feature(name, reference.values[name], current.values[name]) for name, kind, _, _ in FEATURES
                if not (same_inputs and kind == "input")]
    return DriftReport(mode, reference, current, features, max_psi, same_inputs, dict(settings or {}))


# -- inputs ------------------------------------------------------------------------------------------
def input_features(data: bytes, max_pixels: int | None = None) -> tuple[int, int, float]:
    """(width, height, mean brightness) of an image's bytes, decoded by mldeploy's own checked decoder."""
    from mldeploy.images import decode_image

    image = decode_image(data, max_pixels)
    step = max(1, min(image.shape[:2]) // 64)  # about 64 rows: the mean does not need every pixel
    small = image[::step, ::step].astype(np.float32)
    gray = 0.114 * small[:, :, 0] + 0.587 * small[:, :, 1] + 0.299 * small[:, :, 2]
    return image.shape[1], image.shape[0], float(gray.mean())


def parse_window(text: str | None, flag: str) -> tuple[str | None, str | None]:
    """``START..END`` (ISO dates or times, UTC; either end may be left open) -> ISO bounds."""
    if text is None:
        return None, None
    start, sep, end = text.partition("..")
    if not sep:
        raise UsageError(f"{flag} {text!r}: write START..END, e.g. 2026-11-01..2026-11-08 (either end may be left out)")

    def iso(value: str) -> str | None:
        if not value.strip():
            return None
        try:
            at = datetime.fromisoformat(value.strip())
        except ValueError:
            raise UsageError(f"{flag} {text!r}: {value!r} is not a date or time (2026-11-01 or 2026-11-01T12:00)") from None
        at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
        return at.astimezone(timezone.utc).isoformat(timespec="microseconds")

    return iso(start), iso(end)


def _within(at: str, bounds: tuple[str | None, str | None]) -> bool:
    start, end = bounds
    when = datetime.fromisoformat(at)
    return (start is None or when >= datetime.fromisoformat(start)) and (end is None or when < datetime.fromisoformat(end))


def capture_windows(folder: Path, model: str, version: str | None, reference: str | None, current: str | None, *, max_psi: float = MAJOR,
                    with_inputs: bool = True, on_item: Callable[[], None] | None = None) -> DriftReport:
    """One version's recorded answers (and their inputs) in two windows of a capture. Without windows, the
    older half of the requests against the newer half."""
    from mldeploy.capture.replay import captured_inputs
    from mldeploy.capture.store import CaptureStore

    started = time.perf_counter()
    version, items = captured_inputs(folder, model, version)
    records = [item.record for item in items]
    ref_bounds, cur_bounds = parse_window(reference, "--reference"), parse_window(current, "--current")
    if reference is None and current is None:
        half = len(records) // 2
        older, newer = records[:half], records[half:]
        names = ("older half", "newer half")
    else:
        older = [r for r in records if _within(r.captured_at, ref_bounds)]
        newer = [r for r in records if _within(r.captured_at, cur_bounds)]
        names = (f"--reference {reference or 'all'}", f"--current {current or 'all'}")
    if not older or not newer:
        raise UsageError(f"{'--reference' if not older else '--current'} holds no request of {model}@{version} in {folder}")
    samples = []
    store = CaptureStore(folder, write=False) if with_inputs else None
    try:
        for name, group in zip(names, (older, newer)):
            sample = Sample(f"{model}@{version} {name} ({group[0].captured_at[:16]}..{group[-1].captured_at[:16]})")
            for r in group:
                sample.add_answer(r.answer)
                if store is not None:
                    try:
                        sample.add_input(*input_features(store.read_blob(r)))
                    except Exception:  # an image pruned meanwhile, or unreadable: its answer still counts
                        pass
                if on_item is not None:
                    on_item()
            samples.append(sample)
    finally:
        if store is not None:
            store.close()
    report = compare(samples[0], samples[1], mode="windows", max_psi=max_psi,
                     settings={"capture": str(folder), "model": model, "version": version, "reference": reference, "current": current})
    report.wall_seconds = time.perf_counter() - started
    return report


def versions_on_images(answers: Iterable[tuple[Detections | None, Detections | None]], old: str, new: str, *, max_psi: float = MAJOR,
                       settings: dict | None = None) -> DriftReport:
    """Two versions' answers to the same images (``(old, new)`` per image; None where one failed)."""
    reference, current = Sample(old), Sample(new)
    for a, b in answers:
        if a is None or b is None:  # one side failed: the image is left out of both, so both sides see the same images
            continue
        reference.add_answer(a)
        current.add_answer(b)
    return compare(reference, current, mode="versions", max_psi=max_psi, same_inputs=True, settings=settings)


def run_versions(project, model: str, old: str | None, new: str, *, paths: Sequence[str] = (), capture: Path | None = None, engine=None,
                 max_psi: float = MAJOR, on_listed: Callable[[int], None] | None = None, on_item: Callable[..., None] | None = None) -> DriftReport:
    """``mldeploy drift --new v2``: ``new`` against ``old`` on the same images (files, or a capture's, whose
    recorded answers are then the reference and ``old`` the version that gave them)."""
    from mldeploy.capture.replay import captured_inputs
    from mldeploy.pipeline import collect_inputs
    from mldeploy.rollout.releases import resolve_version
    from mldeploy.rollout.sides import Version
    from mldeploy.rollout.spec import EngineChoice

    started = time.perf_counter()
    registry = project.registry()
    new_spec = resolve_version(registry, new, model)
    engine = engine if engine is not None else EngineChoice("local").make(project)
    if capture is not None:
        if paths:
            raise UsageError("give images or --capture, not both")
        version, items = captured_inputs(capture, new_spec.name, old.rpartition("@")[2] if old else None)
        old_name, old_answers = f"{new_spec.name}@{version} (recorded)", [item.record.answer for item in items]
        sides = [Version(new_spec, project.load)]
    else:
        if not paths:
            raise UsageError("no images: give image files or folders, or --capture DIR")
        old_spec = resolve_version(registry, old or model, model)
        items, unmatched = collect_inputs(paths)
        if not items:
            raise UsageError("no images: " + "; ".join(f"{arg}: {err}" for arg, err in unmatched))
        old_name, old_answers = old_spec.ref, None
        sides = [Version(old_spec, project.load), Version(new_spec, project.load)]
    if on_listed is not None:
        on_listed(len(items) * len(sides))
    answers: list[list] = []
    for side in sides:
        engine.prepare(side)
        got = []
        with engine.session():
            for result in engine.detect(side, items, reduced_decode=False):
                got.append(result.detections if result.ok else None)
                if on_item is not None:
                    on_item(result)
        answers.append(got)
    olds = old_answers if old_answers is not None else answers[0]
    report = versions_on_images(zip(olds, answers[-1]), old_name, new_spec.ref, max_psi=max_psi,
                                settings={"model": new_spec.name, "old": old_name, "new": new_spec.ref, "images": len(items),
                                          **({"capture": str(capture)} if capture is not None else {})})
    report.wall_seconds = time.perf_counter() - started
    return report
