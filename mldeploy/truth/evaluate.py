"""Scoring detections against ground truth: precision, recall, AP@0.5 and mAP@0.5:0.95 (COCO), a
confusion table, and TP / FP / FN per image.

AP is computed by **faster-coco-eval** (a maintained C++ implementation of the COCO evaluation, a
drop-in for pycocotools): the same 101-point interpolated precision, the same greedy matching by
score, at most 100 detections per image, crowd (and VOC "difficult") truth ignored. AP per label is
the mean over the recall points of ``precision[t, :, k, all areas, 100 detections]``, and mAP the mean
over labels that have truth, as COCO and Detectron2 report them. The test suite checks the figures
against pycocotools to 1e-6 on real detections.

Precision, recall, the confusion table and the per-image counts are at IoU 0.5 on the detections as
the model returned them (its own confidence threshold), matched one to one with
:func:`mldeploy.compare.match` (truth as the reference): a true positive is a matched box of the
right label, a false negative a true box nobody found, a false positive a predicted box that matches
no true box. A prediction that overlaps an ignored (crowd, difficult) true box is neither.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from mldeploy.compare import ImageComparison, box_iou, match
from mldeploy.detections import Detections

BACKGROUND = "background"
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


@dataclass
class ImageScore:
    """One image: its truth, the prediction, and how they match at IoU 0.5."""

    name: str
    truth: Detections
    prediction: Detections
    comparison: ImageComparison
    ignored: Detections  # boxes of truth that are crowd / difficult (not in ``truth``)
    ignored_predictions: tuple[int, ...] = ()  # predictions on an ignored box: neither TP nor FP

    @property
    def tp(self) -> int:
        return len(self.comparison.matched)

    @property
    def fn(self) -> int:
        return len(self.comparison.missing) + len(self.comparison.relabelled)

    @property
    def fp(self) -> int:
        return len(self.comparison.extra) + len(self.comparison.relabelled) - len(self.ignored_predictions)

    @property
    def correct(self) -> bool:
        return not self.fn and not self.fp


def score_image(name: str, truth: Detections, ignored: Detections, prediction: Detections, iou: float = 0.5) -> ImageScore:
    comparison = match(truth, prediction, iou, drift_iou=0.0)
    on_ignored: list[int] = []
    if len(ignored) and comparison.extra:
        ious = box_iou(prediction.xyxy, ignored.xyxy)
        for j in comparison.extra:
            same = ignored.label == prediction.label[j]
            if same.any() and ious[j, same].max() >= iou:
                on_ignored.append(int(j))
    return ImageScore(name, truth, prediction, comparison, ignored, tuple(on_ignored))


class _Rates:
    """Precision and recall from a subclass's ``tp``, ``fp`` and ``fn`` (None when there is nothing to divide by)."""

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass
class LabelScore(_Rates):
    label: str
    truths: int = 0
    predictions: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    ap50: float | None = None
    ap: float | None = None  # AP@0.5:0.95


@dataclass
class Evaluation(_Rates):
    """Everything ``mldeploy eval`` reports, and what ``shadow --labels`` gates on."""

    model: str
    images: list[ImageScore]
    per_label: dict[str, LabelScore]
    confusion: dict[tuple[str, str], int]  # (true label or background, predicted label or background) -> boxes
    map50: float | None
    map: float | None

    @property
    def tp(self) -> int:
        return sum(s.tp for s in self.per_label.values())

    @property
    def fp(self) -> int:
        return sum(s.fp for s in self.per_label.values())

    @property
    def fn(self) -> int:
        return sum(s.fn for s in self.per_label.values())


def evaluate(model: str, scores: Sequence[ImageScore], classes: Sequence[str]) -> Evaluation:
    """Sum the per-image matches and compute AP over all images."""
    per_label = {label: LabelScore(label) for label in classes}
    confusion: dict[tuple[str, str], int] = {}

    def count(truth: str, predicted: str) -> None:
        confusion[(truth, predicted)] = confusion.get((truth, predicted), 0) + 1

    for s in scores:
        c = s.comparison
        for label in s.truth.label:
            per_label.setdefault(str(label), LabelScore(str(label))).truths += 1
        for label in s.prediction.label:
            per_label.setdefault(str(label), LabelScore(str(label))).predictions += 1
        for i, _j, _ in c.matched:
            label = str(s.truth.label[i])
            per_label[label].tp += 1
            count(label, label)
        for i, j, _ in c.relabelled:
            per_label[str(s.truth.label[i])].fn += 1
            per_label[str(s.prediction.label[j])].fp += 1
            count(str(s.truth.label[i]), str(s.prediction.label[j]))
        for i in c.missing:
            per_label[str(s.truth.label[i])].fn += 1
            count(str(s.truth.label[i]), BACKGROUND)
        ignored = set(s.ignored_predictions)
        for j in c.extra:
            if j not in ignored:
                per_label[str(s.prediction.label[j])].fp += 1
                count(BACKGROUND, str(s.prediction.label[j]))
    ap = coco_ap(scores, list(per_label))
    for label, (ap50, ap_all) in ap.items():
        per_label[label].ap50, per_label[label].ap = ap50, ap_all
    with_truth = [s for s in per_label.values() if s.ap is not None]
    map50 = float(np.mean([s.ap50 for s in with_truth])) if with_truth else None
    map_all = float(np.mean([s.ap for s in with_truth])) if with_truth else None
    return Evaluation(model, list(scores), per_label, confusion, map50, map_all)


def coco_datasets(scores: Iterable[ImageScore], labels: Sequence[str]) -> tuple[dict, list[dict]]:
    """The truth as a COCO dataset and the predictions as COCO results (bbox = x, y, w, h)."""
    category = {label: n + 1 for n, label in enumerate(labels)}
    images, annotations, results = [], [], []
    for image_id, s in enumerate(scores, 1):
        w, h = s.truth.image_size
        images.append({"id": image_id, "width": w, "height": h})
        for boxes, crowd in ((s.truth, 0), (s.ignored, 1)):
            for box, label in zip(boxes.xyxy.astype(np.float64).tolist(), boxes.label):
                annotations.append(_annotation(len(annotations) + 1, image_id, category[str(label)], box, crowd))
        for box, label, score in zip(s.prediction.xyxy.astype(np.float64).tolist(), s.prediction.label, s.prediction.confidence.tolist()):
            x1, y1, x2, y2 = box
            results.append({"image_id": image_id, "category_id": category[str(label)], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    dataset = {"images": images, "annotations": annotations, "categories": [{"id": i, "name": n} for n, i in category.items()]}
    return dataset, results


def _annotation(ann_id: int, image_id: int, category: int, box: list[float], crowd: int) -> dict:
    x1, y1, x2, y2 = box
    return {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd}


def coco_ap(scores: Sequence[ImageScore], labels: Sequence[str]) -> dict[str, tuple[float, float]]:
    """AP@0.5 and AP@0.5:0.95 per label that has truth (faster-coco-eval; pycocotools' definitions)."""
    if not scores or not labels:
        return {}
    from faster_coco_eval import COCO, COCOeval_faster

    dataset, results = coco_datasets(scores, labels)
    with contextlib.redirect_stdout(io.StringIO()):  # the library prints progress
        truth = COCO()
        truth.dataset = dataset
        truth.createIndex()
        found = truth.loadRes(results) if results else None
        if found is None:
            return {label: (0.0, 0.0) for label in _labels_with_truth(dataset, labels)}
        ev = COCOeval_faster(truth, found, "bbox")
        ev.evaluate()
        ev.accumulate()
    precision = np.asarray(ev.eval["precision"])  # [iou thresholds, recall points, categories, areas, max dets]
    out = {}
    for k, label in enumerate(labels):
        p = precision[:, :, k, 0, -1]
        if (p > -1).any():
            out[label] = (_mean_valid(p[0]), _mean_valid(p))
    return out


def _mean_valid(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else 0.0


def _labels_with_truth(dataset: dict, labels: Sequence[str]) -> list[str]:
    present = {a["category_id"] for a in dataset["annotations"] if not a["iscrowd"]}
    return [label for n, label in enumerate(labels, 1) if n in present]


@dataclass(frozen=True)
class TruthScores:
    """What the ground-truth gates read: the new version's evaluation, and the old one's in a rehearsal."""

    new: Evaluation
    old: Evaluation | None = None

    @property
    def map_drop(self) -> float | None:
        """How far the new version's mAP@0.5:0.95 fell below the old one's (negative: it rose)."""
        if self.old is None or self.old.map is None or self.new.map is None:
            return None
        return self.old.map - self.new.map

    @property
    def recall_drop(self) -> float | None:
        """The largest fall in recall (IoU 0.5) of any label with truth, new against old."""
        if self.old is None:
            return None
        drops = [old.recall - self.new.per_label[label].recall for label, old in self.old.per_label.items()
                 if old.recall is not None and label in self.new.per_label and self.new.per_label[label].recall is not None]
        return max(drops) if drops else None

    @property
    def worst_recall_label(self) -> str | None:
        if self.old is None:
            return None
        drops = {label: old.recall - self.new.per_label[label].recall for label, old in self.old.per_label.items()
                 if old.recall is not None and label in self.new.per_label and self.new.per_label[label].recall is not None}
        return max(drops, key=drops.get) if drops else None


IMPROVEMENT, REGRESSION, NEUTRAL = "improvement", "regression", "neutral"


def judge_changes(comparison: ImageComparison, old: ImageScore, new: ImageScore) -> list[dict]:
    """Each disagreement between two versions on one image, marked against the truth: a box the new
    version dropped is a regression if it was right (matched a true box) and an improvement if it was
    a false positive; a box it added, the other way round; a relabelled box by which label is right;
    a drifted box by which of the two lies closer to its true box."""
    old_right = {j: iou for _, j, iou in old.comparison.matched}  # old prediction -> IoU with its true box
    new_right = {j: iou for _, j, iou in new.comparison.matched}
    out = []
    for i in comparison.missing:
        out.append({"change": "missing", "old": int(i), "effect": REGRESSION if i in old_right else IMPROVEMENT})
    for j in comparison.extra:
        out.append({"change": "extra", "new": int(j), "effect": IMPROVEMENT if j in new_right else REGRESSION})
    for i, j, _ in comparison.relabelled:
        effect = IMPROVEMENT if j in new_right and i not in old_right else REGRESSION if i in old_right and j not in new_right else NEUTRAL
        out.append({"change": "relabelled", "old": int(i), "new": int(j), "effect": effect})
    for i, j, _ in comparison.drifted:
        before, after = old_right.get(i, 0.0), new_right.get(j, 0.0)
        effect = IMPROVEMENT if after > before else REGRESSION if after < before else NEUTRAL
        out.append({"change": "drifted", "old": int(i), "new": int(j), "effect": effect})
    return out
