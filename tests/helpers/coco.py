"""pycocotools as an independent reference for the matching in mldeploy.compare."""

import numpy as np

LABELS = ["cat", "dog"]


def coco_matches(old_list, new_list, threshold=0.5, labels=LABELS):
    """Matched (true-positive) count per image and label, computed by pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    images, annotations, results = [], [], []
    for image_id, (old, new) in enumerate(zip(old_list, new_list), 1):
        images.append({"id": image_id, "width": old.image_size[0], "height": old.image_size[1]})
        for box, label in zip(old.xyxy.tolist(), old.label):
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": labels.index(label) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for box, label, score in zip(new.xyxy.tolist(), new.label, new.confidence.tolist()):
            x1, y1, x2, y2 = box
            results.append({"image_id": image_id, "category_id": labels.index(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": i + 1, "name": n} for i, n in enumerate(labels)]}
    gt.createIndex()
    dt = gt.loadRes(results) if results else COCO()
    ev = COCOeval(gt, dt, "bbox")
    ev.params.iouThrs = np.array([threshold])
    ev.params.maxDets = [1000]
    ev.params.areaRng = [[0, 1e10]]
    ev.params.areaRngLbl = ["all"]
    ev.evaluate()
    counts = {}
    for e in ev.evalImgs:
        if e is not None:
            counts[(e["image_id"], labels[e["category_id"] - 1])] = int((e["dtMatches"][0] > 0).sum())
    return counts
