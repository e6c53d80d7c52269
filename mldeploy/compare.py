"""Matching two models' detections on the same image, and agreement metrics over many images.

Used by ``mldeploy shadow`` and ``canary``: the old version is the reference. A new box
matches an old box of the same label when their IoU is at least ``iou_threshold``; matching is
one-to-one and greedy in the order COCO evaluation uses (new boxes by falling confidence, each taking
the unmatched old box of highest IoU), so the counts agree with pycocotools run with the old boxes as
ground truth. Boxes left over that overlap across labels are reported as relabelled. A matched pair
whose IoU is under ``drift_iou`` has *drifted*: the new version still finds the object, but its box
moved or changed size, and the image counts as disagreeing.

When the new version fails on an image the old one answered, :func:`failed_comparison` counts every
old box as missing: an error is never better for recall than a wrong answer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import ClassVar, Mapping

import numpy as np

from mldeploy.detections import Detections

#: IoU under which a matched pair counts as drifted (measured: re-decoding faces@v1's boxes with other
#: prior variances gave pairs of IoU 0.64-0.82, running it at 900 px instead of 300 kept them >= 0.86).
DRIFT_IOU = 0.8


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between ``(n, 4)`` and ``(m, 4)`` xyxy boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class ImageComparison:
    """How a new version's detections on one image relate to the old version's.

    Index pairs are ``(old index, new index, IoU)``; ``missing`` are old indices only the old version
    found, ``extra`` new indices only the new version found. ``new_failed`` marks the comparison of an
    image the new version failed on (then every old box is missing).
    """

    old: Detections
    new: Detections
    matched: tuple[tuple[int, int, float], ...]
    relabelled: tuple[tuple[int, int, float], ...]
    missing: tuple[int, ...]
    extra: tuple[int, ...]
    drift_iou: float = DRIFT_IOU
    new_failed: bool = False

    @property
    def drifted(self) -> tuple[tuple[int, int, float], ...]:
        """Matched pairs whose IoU is under ``drift_iou``."""
        return tuple(pair for pair in self.matched if pair[2] < self.drift_iou)

    @property
    def disagreements(self) -> int:
        """Boxes missing, extra, relabelled or drifted."""
        return len(self.missing) + len(self.extra) + len(self.relabelled) + len(self.drifted)

    @property
    def agrees(self) -> bool:
        return not self.disagreements and not self.new_failed

    @property
    def mean_iou(self) -> float | None:
        return float(np.mean([iou for _, _, iou in self.matched])) if self.matched else None

    @property
    def count_change(self) -> int:
        return len(self.new) - len(self.old)


def _greedy(ious: np.ndarray, new_order: np.ndarray, threshold: float, allowed: np.ndarray) -> list[tuple[int, int, float]]:
    """COCO's greedy assignment: each new box (in ``new_order``) takes the free old box of highest IoU."""
    taken: set[int] = set()
    pairs = []
    for j in new_order:
        best, best_iou = -1, min(threshold, 1 - 1e-10)
        for i in range(ious.shape[0]):
            if i in taken or not allowed[i, j] or ious[i, j] < best_iou:
                continue
            best, best_iou = i, ious[i, j]
        if best >= 0:
            taken.add(best)
            pairs.append((best, int(j), float(best_iou)))
    return pairs


def match(old: Detections, new: Detections, iou_threshold: float = 0.5, drift_iou: float = DRIFT_IOU) -> ImageComparison:
    """Match ``new`` against ``old`` (the reference) one to one."""
    ious = box_iou(old.xyxy, new.xyxy)
    order = np.argsort(-new.confidence, kind="stable")
    same_label = old.label[:, None] == new.label[None, :]
    matched = _greedy(ious, order, iou_threshold, same_label)
    free_old = np.ones(len(old), bool)
    free_new = np.ones(len(new), bool)
    for i, j, _ in matched:
        free_old[i] = free_new[j] = False
    relabelled = _greedy(ious, order[free_new[order]], iou_threshold, ~same_label & free_old[:, None])
    for i, j, _ in relabelled:
        free_old[i] = free_new[j] = False
    return ImageComparison(
        old, new, tuple(sorted(matched)), tuple(sorted(relabelled)),
        tuple(int(i) for i in np.flatnonzero(free_old)), tuple(int(j) for j in np.flatnonzero(free_new)), drift_iou,
    )


def failed_comparison(old: Detections, drift_iou: float = DRIFT_IOU) -> ImageComparison:
    """The comparison of an image the new version failed on: every old box is missing."""
    return ImageComparison(old, Detections.empty(old.image_size), (), (), tuple(range(len(old))), (), drift_iou, new_failed=True)


@dataclass(frozen=True)
class LabelAgreement:
    """Box counts for one label: ``missing`` are the old version's boxes of this label that the new one
    did not find at all, ``relabelled`` those it found under another label."""

    old: int = 0
    new: int = 0
    matched: int = 0
    missing: int = 0
    extra: int = 0
    relabelled: int = 0
    drifted: int = 0

    @property
    def count_change(self) -> int:
        return self.new - self.old

    @property
    def recall(self) -> float:
        return self.matched / self.old if self.old else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.new if self.new else 1.0


@dataclass(frozen=True)
class AgreementCounts:
    """Box and image counts of a comparison, *mergeable*: ``a + b`` adds two runs (or two shards of one).

    Every layer reads its figures from here, so the CLI, the reports and a running server's shadow
    endpoint compute precision, recall and mean IoU the same way. With nothing compared, the ratios are
    ``None`` (no evidence); with images compared but no boxes to divide by, they are 1.0 (nothing was
    missed or invented).
    """

    images: int = 0  # compared images: both versions answered
    disagreeing_images: int = 0
    old_boxes: int = 0
    new_boxes: int = 0
    matched: int = 0
    missing: int = 0
    extra: int = 0
    relabelled: int = 0
    iou_sum: float = 0.0
    drifted: int = 0  # matched pairs under the drift IoU

    #: Field -> column name in a store row (the live shadow's counters table).
    ROW_COLUMNS: ClassVar[dict[str, str]] = {
        "images": "compared", "disagreeing_images": "disagreeing", "old_boxes": "old_boxes", "new_boxes": "new_boxes",
        "matched": "matched", "missing": "missing", "extra": "extra", "relabelled": "relabelled", "iou_sum": "iou_sum",
        "drifted": "drifted",
    }

    @classmethod
    def of(cls, comparison: ImageComparison) -> "AgreementCounts":
        """The counts of one image's comparison."""
        c = comparison
        return cls(1, int(not c.agrees), len(c.old), len(c.new), len(c.matched), len(c.missing), len(c.extra), len(c.relabelled),
                   sum(iou for _, _, iou in c.matched), len(c.drifted))

    def __add__(self, other: "AgreementCounts") -> "AgreementCounts":
        return AgreementCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(AgreementCounts)})

    def to_row(self) -> dict[str, float]:
        return {column: getattr(self, name) for name, column in self.ROW_COLUMNS.items()}

    @classmethod
    def from_row(cls, row: Mapping[str, float]) -> "AgreementCounts":
        return cls(**{name: row[column] for name, column in cls.ROW_COLUMNS.items()})

    def _ratio(self, part: float, whole: float) -> float | None:
        if not self.images:
            return None
        return part / whole if whole else 1.0

    @property
    def precision(self) -> float | None:
        """Share of the new version's boxes that match an old box."""
        return self._ratio(self.matched, self.new_boxes)

    @property
    def recall(self) -> float | None:
        """Share of the old version's boxes the new version finds again."""
        return self._ratio(self.matched, self.old_boxes)

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def disagreement(self) -> float | None:
        """Share of compared images with any missing, extra or relabelled box."""
        return self.disagreeing_images / self.images if self.images else None

    @property
    def mean_iou(self) -> float | None:
        """Mean IoU of matched boxes: drops when the new version's boxes drift but still match."""
        return self.iou_sum / self.matched if self.matched else None

    @property
    def drift(self) -> float | None:
        """Share of matched boxes that drifted (IoU under the drift threshold)."""
        if not self.images:
            return None
        return self.drifted / self.matched if self.matched else 0.0


@dataclass(frozen=True)
class AgreementResult(AgreementCounts):
    """Agreement of a new version with the old one over a set of images (old = reference), per label too."""

    per_label: dict[str, LabelAgreement] = field(default_factory=dict)
    answered: AgreementCounts | None = None  # the same counts over images both versions answered

    @property
    def counts(self) -> AgreementCounts:
        return AgreementCounts(**{f.name: getattr(self, f.name) for f in fields(AgreementCounts)})

    @property
    def count_change_by_label(self) -> dict[str, int]:
        return {label: stats.count_change for label, stats in self.per_label.items() if stats.count_change}

    @property
    def max_relative_count_change(self) -> float:
        """Largest ``|new - old| / old`` over labels (an absent label counts as one box)."""
        return max((abs(s.count_change) / max(s.old, 1) for s in self.per_label.values()), default=0.0)


@dataclass
class AgreementMetric:
    """``update(old, new)`` per image, then ``compute()``. Streaming and mergeable: each comparison is
    folded into counts as it comes (nothing of the image is kept), and ``a + b`` adds two shards."""

    iou_threshold: float = 0.5
    drift_iou: float = DRIFT_IOU
    _total: AgreementCounts = field(default_factory=AgreementCounts)
    _answered: AgreementCounts = field(default_factory=AgreementCounts)
    _per_label: dict[str, Counter] = field(default_factory=dict)

    def update(self, old: Detections, new: Detections) -> ImageComparison:
        comparison = match(old, new, self.iou_threshold, self.drift_iou)
        self.add(comparison)
        return comparison

    def add(self, comparison: ImageComparison) -> None:
        """Count a comparison made elsewhere (the shadow engine matches once and shares it)."""
        c = comparison
        counts = AgreementCounts.of(c)
        self._total += counts
        if not c.new_failed:
            self._answered += counts

        def bump(label, key: str) -> None:
            self._per_label.setdefault(str(label), Counter())[key] += 1

        for label in c.old.label:
            bump(label, "old")
        for label in c.new.label:
            bump(label, "new")
        for i, _, _ in c.matched:
            bump(c.old.label[i], "matched")
        for i in c.missing:
            bump(c.old.label[i], "missing")
        for j in c.extra:
            bump(c.new.label[j], "extra")
        for i, _, _ in c.relabelled:
            bump(c.old.label[i], "relabelled")
        for i, _, _ in c.drifted:
            bump(c.old.label[i], "drifted")

    def __add__(self, other: "AgreementMetric") -> "AgreementMetric":
        labels = {label: Counter(self._per_label.get(label)) + Counter(other._per_label.get(label))
                  for label in {*self._per_label, *other._per_label}}
        return AgreementMetric(self.iou_threshold, self.drift_iou, self._total + other._total, self._answered + other._answered, labels)

    def reset(self) -> None:
        self._total, self._answered, self._per_label = AgreementCounts(), AgreementCounts(), {}

    def compute(self) -> AgreementResult:
        per_label_counts = {label: LabelAgreement(**counts) for label, counts in sorted(self._per_label.items())}
        return AgreementResult(**{f.name: getattr(self._total, f.name) for f in fields(AgreementCounts)}, per_label=per_label_counts,
                               answered=self._answered)
