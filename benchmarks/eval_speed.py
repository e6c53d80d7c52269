"""How long scoring against ground truth takes, next to inference and to pycocotools.

10 000 synthetic images (640x480, 0-8 true boxes of 3 classes each; the predictions are the true boxes
jittered, some dropped, some relabelled, plus false boxes, with random scores) are scored three ways,
in this run:

* mldeploy's evaluation (``mldeploy.truth.evaluate``): the per-image matching (TP / FP / FN, the
  confusion table) plus AP@0.5 and mAP@0.5:0.95 by faster-coco-eval;
* pycocotools alone (``COCOeval`` evaluate + accumulate): the reference implementation's AP only;
* faces@v1's forward pass on 20 sample photos, times 500: what inference on as many images costs.

Target: scoring is a small fraction (under 5%) of inference. The mAP of both evaluations is printed:
they must be equal (to 1e-6).

Run from the repository root:  .venv/bin/python benchmarks/eval_speed.py [--images N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time

import common
import numpy as np

from mldeploy.detections import Detections
from mldeploy.truth.evaluate import coco_datasets, evaluate, score_image

LABELS = ["cat", "dog", "car"]


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    size = (640, 480)
    empty = Detections.empty(size)
    items = []
    for _ in range(n):
        k = int(rng.integers(0, 9))
        xy = rng.uniform(0, 400, (k, 2))
        wh = rng.uniform(16, 200, (k, 2))
        boxes = np.clip(np.hstack([xy, xy + wh]), 0, [640, 480, 640, 480])
        labels = rng.choice(LABELS, k)
        truth = Detections(boxes, [1.0] * k, [0] * k, list(labels), size)
        shift = xy + rng.normal(0, 6, xy.shape)
        jitter = np.clip(np.hstack([shift, shift + wh * rng.uniform(0.85, 1.15, wh.shape)]), 0, [640, 480, 640, 480])
        keep = rng.random(k) > 0.15
        m = int(rng.integers(0, 3))
        fxy = rng.uniform(0, 500, (m, 2))
        false = np.clip(np.hstack([fxy, fxy + rng.uniform(16, 120, (m, 2))]), 0, [640, 480, 640, 480])
        pred_labels = [lab if rng.random() > 0.05 else rng.choice(LABELS) for lab in labels[keep]] + list(rng.choice(LABELS, m))
        boxes = np.vstack([jitter[keep], false])
        pred = Detections(boxes, rng.random(len(boxes)).tolist(), [0] * len(boxes), pred_labels, size)
        items.append((truth, empty, pred))
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    items = synthetic(args.images)
    boxes = sum(len(t) for t, _, _ in items), sum(len(p) for _, _, p in items)
    print(f"{args.images} synthetic images, {boxes[0]} true boxes, {boxes[1]} predicted, 3 classes\n")

    started = time.perf_counter()
    scores = [score_image(f"img{i}", t, c, p) for i, (t, c, p) in enumerate(items)]
    matched = time.perf_counter() - started
    result = evaluate("synthetic", scores, LABELS)
    ours = time.perf_counter() - started
    print(f"mldeploy (matching {matched:.2f} s + AP by faster-coco-eval): {ours:.2f} s   mAP {result.map:.6f}  mAP@0.5 {result.map50:.6f}")

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = coco_datasets(scores, LABELS)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    reference = time.perf_counter() - started
    print(f"pycocotools (AP only):                               {reference:.2f} s   mAP {ev.stats[0]:.6f}  mAP@0.5 {ev.stats[1]:.6f}")

    from mldeploy.images import read_image
    from mldeploy.models import default_registry, load_detector

    detector = load_detector(default_registry().resolve("faces@v1"))
    photos = [read_image(p) for p in sorted((common.ROOT / "sample_images").glob("*.jpg"))]
    detector.detect(photos[0])
    started = time.perf_counter()
    for n in range(20):
        detector.detect(photos[n % len(photos)])
    per_image = (time.perf_counter() - started) / 20
    inference = per_image * args.images
    print(f"faces@v1 inference on as many images (measured on 20): {inference:.0f} s ({per_image * 1000:.1f} ms an image)\n")
    share = ours / inference
    print(f"scoring is {share:.2%} of inference; {reference / ours:.1f}x faster than pycocotools' AP alone")
    missed = []
    if share >= 0.05:
        missed.append(f"scoring takes {share:.1%} of inference (target < 5%)")
    if abs(result.map - ev.stats[0]) > 1e-6 or abs(result.map50 - ev.stats[1]) > 1e-6:
        missed.append("the mAP differs from pycocotools'")
    return common.verdict(missed)


if __name__ == "__main__":
    sys.exit(main())
