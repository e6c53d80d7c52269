"""Matching checked against an independent computation: pycocotools with the old boxes as ground truth."""

import numpy as np
import pytest

from mldeploy.compare import AgreementMetric, box_iou, match
from mldeploy.detections import Detections
from mldeploy.images import read_image
from mldeploy.models import load_detector
from tests.helpers.coco import coco_matches

LABELS = ["cat", "dog"]


def dets(boxes, labels, conf=None, size=(200, 200)):
    n = len(boxes)
    conf = np.linspace(0.9, 0.5, n) if conf is None else conf
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), conf, [LABELS.index(l) for l in labels], labels, size)


def test_iou_matrix():
    ious = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert ious[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0])


def test_match_kinds():
    old = dets([[0, 0, 50, 50], [100, 100, 150, 150], [0, 100, 40, 140]], ["cat", "cat", "dog"])
    new = dets([[2, 2, 50, 50], [100, 100, 150, 150], [150, 0, 190, 40]], ["cat", "dog", "dog"])
    result = match(old, new)
    assert [(i, j) for i, j, _ in result.matched] == [(0, 0)]
    assert [(i, j) for i, j, _ in result.relabelled] == [(1, 1)]
    assert result.missing == (2,) and result.extra == (2,)
    assert not result.agrees and result.count_change == 0


def test_a_version_agrees_with_itself(samples, registry):
    detector = load_detector(registry.resolve("faces@v1"))
    metric = AgreementMetric()
    for path in sorted(samples.glob("*.jpg")):
        d = detector.detect(read_image(path))
        assert metric.update(d, d).agrees
    result = metric.compute()
    assert (result.precision, result.recall, result.f1, result.disagreement) == (1.0, 1.0, 1.0, 0.0)
    assert result.count_change_by_label == {}


def test_planted_regressions_lower_agreement(samples, registry):
    detector = load_detector(registry.resolve("faces@v1"))
    old = [detector.detect(read_image(p)) for p in sorted(samples.glob("*.jpg"))]
    shifted = AgreementMetric()
    for d in old:
        moved = d.xyxy.copy()
        moved[:, [0, 2]] = np.clip(moved[:, [0, 2]] + (moved[:, 2:3] - moved[:, 0:1]) * 0.6, 0, d.image_size[0])
        shifted.update(d, Detections(moved, d.confidence, d.class_id, d.label, d.image_size))
    assert shifted.compute().recall < 0.5
    blind = AgreementMetric()
    for d in old:
        blind.update(d, d[d.confidence > 2])  # finds nothing
    result = blind.compute()
    assert result.recall == 0 and result.count_change_by_label == {"face": -3}


def test_matching_agrees_with_pycocotools_on_random_boxes(capsys):
    rng = np.random.default_rng(7)
    olds, news = [], []
    for _ in range(60):
        n_old = rng.integers(0, 8)
        centres = rng.uniform(20, 180, (n_old, 2))
        sizes = rng.uniform(10, 60, (n_old, 2))
        old_boxes = np.clip(np.hstack([centres - sizes / 2, centres + sizes / 2]), 0, 200)
        old_labels = list(rng.choice(LABELS, n_old))
        # The new version: jittered copies (some far enough to fail), a few dropped, a few extra.
        keep = rng.random(n_old) > 0.2
        jitter = rng.normal(0, rng.choice([2, 8, 20]), (n_old, 4))
        new_boxes = np.clip(old_boxes + jitter, 0, 200)[keep]
        new_labels = [l for l, k in zip(old_labels, keep) if k]
        n_extra = rng.integers(0, 3)
        extra_c = rng.uniform(20, 180, (n_extra, 2))
        new_boxes = np.vstack([new_boxes.reshape(-1, 4), np.clip(np.hstack([extra_c - 15, extra_c + 15]), 0, 200)])
        new_labels += list(rng.choice(LABELS, n_extra))
        ok_old = (old_boxes[:, 2] > old_boxes[:, 0]) & (old_boxes[:, 3] > old_boxes[:, 1])
        ok_new = (new_boxes[:, 2] > new_boxes[:, 0]) & (new_boxes[:, 3] > new_boxes[:, 1])
        olds.append(dets(old_boxes[ok_old], [l for l, k in zip(old_labels, ok_old) if k], conf=rng.uniform(0.3, 1, ok_old.sum())))
        news.append(dets(new_boxes[ok_new], [l for l, k in zip(new_labels, ok_new) if k], conf=rng.uniform(0.3, 1, ok_new.sum())))
    expected = coco_matches(olds, news)
    capsys.readouterr()  # pycocotools prints progress
    ours = {}
    for image_id, (old, new) in enumerate(zip(olds, news), 1):
        for i, j, _ in match(old, new).matched:
            key = (image_id, str(old.label[i]))
            ours[key] = ours.get(key, 0) + 1
    expected = {k: v for k, v in expected.items() if v}
    assert sum(expected.values()) > 50  # plenty of matches, and (below) plenty of misses
    assert sum(len(o) for o in olds) - sum(expected.values()) > 20
    assert ours == expected


def test_contested_box_goes_to_the_more_confident_new_box_as_in_coco(capsys):
    old = dets([[0, 0, 10, 10]], ["cat"])
    new = dets([[0, 0, 10, 10], [1, 0, 11, 10]], ["cat", "cat"], conf=[0.5, 0.9])  # exact copy is less sure
    result = match(old, new)
    assert [(i, j) for i, j, _ in result.matched] == [(0, 1)] and result.extra == (0,)
    assert coco_matches([old], [new]) == {(1, "cat"): 1}


def test_agreement_counts_add_up_like_one_run():
    from mldeploy.compare import AgreementCounts

    pairs = [
        (dets([[0, 0, 10, 10], [20, 20, 30, 30]], ["cat", "dog"]), dets([[1, 1, 10, 10]], ["cat"])),
        (dets([[0, 0, 50, 50]], ["dog"]), dets([[0, 0, 50, 50], [100, 100, 150, 150]], ["dog", "cat"])),
        (dets([], []), dets([], [])),
    ]
    whole = AgreementMetric()
    for old, new in pairs:
        whole.update(old, new)
    total = whole.compute()
    shards = sum((AgreementCounts.of(match(o, n)) for o, n in pairs), AgreementCounts())
    assert shards == total.counts  # a distributed run adds shards up to the same figures
    assert AgreementCounts.from_row(shards.to_row()) == shards and shards.to_row()["compared"] == 3
    assert (shards.precision, shards.recall, shards.disagreement) == (total.precision, total.recall, total.disagreement)
    assert AgreementCounts().precision is None and AgreementCounts().disagreement is None  # nothing compared: no evidence
    nothing_found = AgreementCounts(images=2)
    assert (nothing_found.precision, nothing_found.recall, nothing_found.mean_iou) == (1.0, 1.0, None)
