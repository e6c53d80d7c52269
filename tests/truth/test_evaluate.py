"""Scores against truth: mAP equal to pycocotools', the confusion table and per-image counts."""

import contextlib
import io

import numpy as np
import pytest

from mldeploy.detections import Detections
from mldeploy.truth.evaluate import BACKGROUND, TruthScores, evaluate, judge_changes, score_image
from mldeploy.compare import match


def dets(boxes, labels, scores=None, size=(1000, 1000)):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = [1.0] * len(boxes) if scores is None else scores
    return Detections(boxes, scores, [0] * len(boxes), list(labels), size)


def pycocotools_ap(items, labels):
    """AP@0.5 and AP@0.5:0.95 per label by pycocotools itself, from (truth, crowd, prediction) triples."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cat = {label: i + 1 for i, label in enumerate(labels)}
    images, anns, res = [], [], []
    for image_id, (truth, crowd, pred) in enumerate(items, 1):
        images.append({"id": image_id, "width": truth.image_size[0], "height": truth.image_size[1]})
        for d, iscrowd in ((truth, 0), (crowd, 1)):
            for (x1, y1, x2, y2), label in zip(d.xyxy.astype(float).tolist(), d.label):
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                             "area": (x2 - x1) * (y2 - y1), "iscrowd": iscrowd})
        for (x1, y1, x2, y2), label, s in zip(pred.xyxy.astype(float).tolist(), pred.label, pred.confidence.tolist()):
            res.append({"image_id": image_id, "category_id": cat[label], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for n, i in cat.items()]}
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(res), "bbox")
    ev.evaluate()
    ev.accumulate()
    with contextlib.redirect_stdout(io.StringIO()):
        ev.summarize()
    out = {}
    for k, label in enumerate(labels):
        p = ev.eval["precision"][:, :, k, 0, -1]
        if (p > -1).any():
            out[label] = (p[0][p[0] > -1].mean(), p[p > -1].mean())
    return out, ev


def check_against_pycocotools(items, labels):
    scores = [score_image(f"img{i}", t, c, p) for i, (t, c, p) in enumerate(items)]
    result = evaluate("m", scores, labels)
    reference, ev = pycocotools_ap(items, labels)
    assert set(reference) == {label for label, s in result.per_label.items() if s.ap is not None}
    for label, (ap50, ap) in reference.items():
        assert result.per_label[label].ap50 == pytest.approx(ap50, abs=1e-6), label
        assert result.per_label[label].ap == pytest.approx(ap, abs=1e-6), label
    assert result.map == pytest.approx(ev.stats[0], abs=1e-6)  # COCO's headline AP is the same mean
    assert result.map50 == pytest.approx(ev.stats[1], abs=1e-6)
    return result


def test_map_equals_pycocotools_on_real_detections(project_dir, registry):
    """faces@v2 (MTCNN) boxes as the truth, faces@v1 at a low threshold as the prediction, on the photos,
    mirrored and shrunk: real boxes and real scores, many of them wrong."""
    import cv2

    from mldeploy.images import read_image
    from mldeploy.models import load_detector

    truth_model, predicted = load_detector(registry.resolve("faces@v2")), load_detector(registry.resolve("faces@v1"))
    items = []
    for path in sorted((project_dir / "photos").glob("*.jpg")):
        image = read_image(path)
        for picture in (image, cv2.flip(image, 1), cv2.resize(image, None, fx=0.6, fy=0.6)):
            truth = truth_model.detect(picture)
            items.append((truth, Detections.empty(truth.image_size), predicted.detect(picture, conf=0.05)))
    assert sum(len(t) for t, _, _ in items) >= 6 and sum(len(p) for _, _, p in items) > 30
    check_against_pycocotools(items, ["face"])


def test_map_equals_pycocotools_on_many_classes_crowds_and_crowded_images():
    rng = np.random.default_rng(7)
    labels = ["cat", "dog", "car"]
    items = []
    for n in range(150):
        k = int(rng.integers(0, 6))
        xy = rng.uniform(0, 500, (k, 2))
        wh = rng.uniform(10, 120, (k, 2))
        truth_boxes = np.hstack([xy, xy + wh])
        truth_labels = rng.choice(labels, k)
        crowd = dets(np.hstack([xy[:1], xy[:1] + 200]), truth_labels[:1]) if k and n % 10 == 0 else dets([], [])
        shifted = xy + rng.normal(0, 8, xy.shape)
        jitter = np.clip(np.hstack([shifted, shifted + wh * rng.uniform(0.8, 1.2, wh.shape)]), 0, 1000)
        keep = rng.random(k) > 0.2
        m = int(rng.integers(0, 4)) + (130 if n == 3 else 0)  # one image over the 100-detection limit
        fxy = rng.uniform(0, 500, (m, 2))
        false = np.hstack([fxy, fxy + rng.uniform(10, 100, (m, 2))])
        pred_boxes = np.vstack([jitter[keep], false])
        pred_labels = list(np.where(rng.random(keep.sum()) > 0.1, truth_labels[keep], rng.choice(labels, keep.sum()))) + list(rng.choice(labels, m))
        items.append((dets(truth_boxes, truth_labels), crowd, dets(pred_boxes, pred_labels, rng.random(len(pred_boxes)).tolist())))
    result = check_against_pycocotools(items, labels)
    assert 0 < result.map < result.map50 < 1


def test_confusion_counts_and_changes_against_truth():
    truth = dets([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], ["cat", "dog", "cat"])
    old = dets([[0, 0, 10, 10], [20, 20, 30, 30], [60, 60, 70, 70]], ["cat", "cat", "dog"], [0.9, 0.8, 0.7])
    new = dets([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], ["cat", "dog", "cat"], [0.9, 0.8, 0.7])
    empty = dets([], [])
    s_old, s_new = score_image("x", truth, empty, old), score_image("x", truth, empty, new)
    assert (s_old.tp, s_old.fp, s_old.fn) == (1, 2, 2) and (s_new.tp, s_new.fp, s_new.fn) == (3, 0, 0)
    result = evaluate("old", [s_old], ["cat", "dog"])
    assert result.confusion == {("cat", "cat"): 1, ("dog", "cat"): 1, ("cat", BACKGROUND): 1, (BACKGROUND, "dog"): 1}
    assert (result.per_label["cat"].tp, result.per_label["cat"].fp, result.per_label["cat"].fn) == (1, 1, 1)
    changes = judge_changes(match(old, new), s_old, s_new)
    assert {(c["change"], c["effect"]) for c in changes} == {("missing", "improvement"), ("extra", "improvement"), ("relabelled", "improvement")}
    backwards = judge_changes(match(new, old), s_new, s_old)
    assert {c["effect"] for c in backwards} == {"regression"}
    scores = TruthScores(new=evaluate("new", [s_new], ["cat", "dog"]), old=result)
    assert scores.map_drop < 0 and scores.recall_drop < 0  # the new version is better on every count


def test_predictions_on_crowd_truth_are_neither_right_nor_wrong():
    truth = dets([[0, 0, 10, 10]], ["cat"])
    crowd = dets([[100, 100, 300, 300]], ["cat"])
    pred = dets([[0, 0, 10, 10], [110, 110, 290, 290], [400, 400, 420, 420]], ["cat", "cat", "cat"], [0.9, 0.8, 0.7])
    s = score_image("x", truth, crowd, pred)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    check_against_pycocotools([(truth, crowd, pred)], ["cat"])
