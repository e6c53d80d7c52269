"""Conversion of results to plain data (JSON, CSV rows). Lives at the edge, not in the value types."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mldeploy.detections import Detections
from mldeploy.pipeline import DetectionResult, RunSummary

CSV_COLUMNS = ["image", "model", "width", "height", "label", "class_id", "confidence", "x1", "y1", "x2", "y2", "error"]


def detections_to_list(detections: Detections) -> list[dict[str, Any]]:
    return [
        {
            "label": str(label),
            "class_id": int(class_id),
            "confidence": round(float(conf), 4),
            "box": [round(float(v), 1) for v in box],
        }
        for box, conf, class_id, label in zip(detections.xyxy, detections.confidence, detections.class_id, detections.label)
    ]


def result_to_dict(result: DetectionResult) -> dict[str, Any]:
    out: dict[str, Any] = {"image": result.source, "model": result.model}
    if not result.ok:
        out["error"] = str(result.error)
        out["error_type"] = type(result.error).__name__
        return out
    dets = result.detections
    assert dets is not None
    out.update(
        width=dets.image_size[0],
        height=dets.image_size[1],
        count=len(dets),
        counts=dets.counts(),
        detections=detections_to_list(dets),
        inference_ms=round(result.seconds * 1000, 2),
    )
    if result.saved_to is not None:
        out["saved_to"] = str(result.saved_to)
    return out


def result_to_csv_rows(result: DetectionResult) -> list[dict[str, Any]]:
    base = {"image": result.source, "model": result.model}
    if not result.ok:
        return [{**base, "error": str(result.error)}]
    dets = result.detections
    assert dets is not None
    size = {"width": dets.image_size[0], "height": dets.image_size[1]}
    rows = [
        {**base, **size, "label": d["label"], "class_id": d["class_id"], "confidence": d["confidence"],
         "x1": d["box"][0], "y1": d["box"][1], "x2": d["box"][2], "y2": d["box"][3]}
        for d in detections_to_list(dets)
    ]
    return rows or [{**base, **size}]  # an image with no detections still gets a row


def results_to_coco(results: Sequence[DetectionResult], classes: Sequence[str], image_ids: Mapping[str, int] | None = None,
                    category_ids: Mapping[str, int] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """A COCO results array (``image_id``, ``category_id``, ``bbox`` as [x, y, width, height] in pixels,
    ``score``), as pycocotools' ``loadRes`` reads it, and what was left out (named).

    Ids come from a COCO labels file when given (``image_ids``: file_name -> id, ``category_ids``: name ->
    id); otherwise images are numbered 1, 2, ... in the order given and categories by the model's class
    list (1 = its first class). An image the labels do not name, or a class they lack, is left out and
    named: a result with a made-up id would be scored against the wrong truth."""
    out: list[dict[str, Any]] = []
    skipped: list[str] = []
    categories = dict(category_ids) if category_ids is not None else {c: i + 1 for i, c in enumerate(classes)}
    by_name: dict[str, int | None] = {}
    if image_ids is not None:
        for name, image_id in image_ids.items():
            base = name.rsplit("/", 1)[-1]
            by_name[base] = None if base in by_name else image_id  # a base name two entries share is ambiguous
    missing_classes: set[str] = set()
    for n, result in enumerate(r for r in results if r.ok):
        if image_ids is None:
            image_id = n + 1
        else:
            source = result.source.replace("\\", "/")
            image_id = next((i for name, i in image_ids.items() if source == name or source.endswith("/" + name)), None)
            if image_id is None:
                image_id = by_name.get(source.rsplit("/", 1)[-1])
            if image_id is None:
                skipped.append(f"{result.source}: no image entry in the labels names it")
                continue
        d = result.detections
        for (x1, y1, x2, y2), conf, label in zip(d.xyxy.tolist(), d.confidence.tolist(), d.label):
            category = categories.get(str(label))
            if category is None:
                missing_classes.add(str(label))
                continue
            out.append({"image_id": int(image_id), "category_id": int(category), "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": round(float(conf), 5)})
    skipped += [f"class {c!r}: not a category of the labels; its boxes are left out" for c in sorted(missing_classes)]
    return out, skipped


def summary_to_dict(summary: RunSummary) -> dict[str, Any]:
    return {
        "model": summary.model,
        "images": summary.images,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "detections": summary.detections,
        "per_label": dict(summary.per_label.most_common()),
        "load_seconds": round(summary.load_seconds, 3),
        "wall_seconds": round(summary.wall_seconds, 3),
        "inference_seconds": round(summary.inference_seconds, 3),
        "images_per_second": round(summary.images_per_second, 2),
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def latency_to_dict(stats) -> dict[str, Any]:
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    return {"calls": stats.calls, "p50_ms": ms(stats.p50), "p95_ms": ms(stats.p95), "mean_ms": ms(stats.mean)}


def shadow_summary_to_dict(summary) -> dict[str, Any]:
    """A :class:`~mldeploy.rollout.shadow.ShadowSummary` as plain data."""
    a = summary.agreement
    return {
        "old": summary.old,
        "new": summary.new,
        "iou_threshold": summary.iou_threshold,
        "images": summary.images,
        "compared": summary.compared,
        "unreadable": summary.unreadable,
        "old_errors": summary.old_errors,
        "new_errors": summary.new_errors,
        "disagreeing_images": a.disagreeing_images,
        "disagreement": _round(a.disagreement),
        "precision": _round(a.precision),
        "recall": _round(a.recall),
        "f1": _round(a.f1),
        "mean_iou": _round(a.mean_iou),
        "drift": _round(a.drift),
        "drift_iou": summary.drift_iou,
        "answered_only": {"images": a.answered.images, "precision": _round(a.answered.precision), "recall": _round(a.answered.recall)},
        "boxes": {"old": a.old_boxes, "new": a.new_boxes, "matched": a.matched, "missing": a.missing, "extra": a.extra, "relabelled": a.relabelled,
                  "drifted": a.drifted},
        "per_label": {
            label: {"old": s.old, "new": s.new, "matched": s.matched, "missing": s.missing, "extra": s.extra,
                    "relabelled": s.relabelled, "drifted": s.drifted, "count_change": s.count_change, "recall": _round(s.recall),
                    "precision": _round(s.precision)}
            for label, s in a.per_label.items()
        },
        "latency": {"old": latency_to_dict(summary.old_latency), "new": latency_to_dict(summary.new_latency),
                    "paired_images": len(summary.latency_pairs), "sampled": summary.latency_sampled,
                    "p50_ratio": _ratio_to_dict(summary.p50_ratio), "p95_ratio": _ratio_to_dict(summary.p95_ratio_estimate)},
    }


def _ratio_to_dict(estimate) -> dict[str, Any] | None:
    if estimate is None:
        return None
    return {"value": _round(estimate.value, 4), "interval_90": [_round(estimate.low, 4), _round(estimate.high, 4)], "images": estimate.pairs}


def gate_to_dict(result) -> dict[str, Any]:
    out = {"gate": result.name, "flag": result.gate.flag, "kind": result.gate.kind, "bound": result.bound, "value": _round(result.value, 6),
           "status": result.status, "passed": result.passed, "message": result.message}
    if result.interval is not None:
        out["interval"] = [_round(v, 6) for v in result.interval]
    if result.pairs is not None:
        out["images"] = result.pairs
    return out


def verdict_to_dict(verdict) -> dict[str, Any]:
    """The verdict as every report states it: the same deciding gates as the headline and the JUnit failures."""
    return {"status": verdict.status, "headline": verdict.headline, "deciding": [g.name for g in verdict.deciding],
            "let_through": [g.name for g in verdict.let_through],
            "also_inconclusive": [g.name for g in verdict.unjudged if not verdict.ok],
            "not_measured": [g.name for g in verdict.not_measured]}


def evaluation_to_dict(e) -> dict[str, Any]:
    return {
        "model": e.model, "images": len(e.images), "tp": e.tp, "fp": e.fp, "fn": e.fn,
        "precision": _round(e.precision), "recall": _round(e.recall), "map50": _round(e.map50, 6), "map": _round(e.map, 6),
        "per_label": {label: {"truths": s.truths, "predictions": s.predictions, "tp": s.tp, "fp": s.fp, "fn": s.fn,
                              "precision": _round(s.precision), "recall": _round(s.recall), "ap50": _round(s.ap50, 6), "ap": _round(s.ap, 6)}
                      for label, s in e.per_label.items()},
        "confusion": [{"truth": t, "predicted": p, "boxes": n} for (t, p), n in sorted(e.confusion.items())],
    }


def shadow_record_to_dict(record, truths=None) -> dict[str, Any]:
    """One image of a shadow or canary replay: both versions' answers and how they match."""
    out: dict[str, Any] = {"image": record.source}
    captured = getattr(record.item, "record", None)
    if captured is not None:  # a capture replay: which request, when, and its blob
        out["capture"] = {"id": captured.id, "captured_at": captured.captured_at, "sha256": captured.sha256, "route": captured.route}
    if record.input_error is not None:
        out["error"] = str(record.input_error)
        out["error_type"] = type(record.input_error).__name__
        return out
    for side in ("old", "new"):
        result = getattr(record, side)
        entry: dict[str, Any] = {"model": result.model}
        if result.ok:
            entry.update(count=len(result.detections), detections=detections_to_list(result.detections), inference_ms=round(result.seconds * 1000, 2))
        else:
            entry.update(error=str(result.error), error_type=type(result.error).__name__)
        out[side] = entry
    if truths is not None and record.old.ok and record.new.ok:
        out["truth"] = record_truth(record, truths)
    c = record.comparison
    if c is not None:
        out["comparison"] = {
            "agrees": c.agrees,
            "matched": [{"old": i, "new": j, "iou": round(iou, 4)} for i, j, iou in c.matched],
            "drifted": [{"old": i, "new": j, "iou": round(iou, 4)} for i, j, iou in c.drifted],
            "new_failed": c.new_failed,
            "relabelled": [{"old": i, "new": j, "iou": round(iou, 4)} for i, j, iou in c.relabelled],
            "missing": list(c.missing),
            "extra": list(c.extra),
            "mean_iou": _round(c.mean_iou),
            "count_change": c.count_change,
        }
    return out


def canary_step_to_dict(step) -> dict[str, Any]:
    """One step of a canary rollout (its timeline row) as plain data."""
    s = step.summary
    return {
        "share": step.share,
        "requests": step.requests,
        "canary_requests": step.canary_requests,
        "verdict": step.verdict,
        "disagreement": None if s is None else _round(s.agreement.disagreement),
        "recall": None if s is None else _round(s.agreement.recall),
        "precision": None if s is None else _round(s.agreement.precision),
        "new_errors": None if s is None else s.new_errors,
        "old_p50_s": None if s is None else s.old_latency.p50,
        "new_p50_s": None if s is None else s.new_latency.p50,
        "p95_ratio": None if s is None else _round(s.p95_ratio, 4),
        "failed_gates": [g.message for g in step.failed_gates],
        "inconclusive_gates": [g.message for g in step.inconclusive_gates],
    }


def report_to_dict(report) -> dict[str, Any]:
    """A :class:`~mldeploy.rollout.rehearsal.Report` as plain data: what ``--format json`` and ``--report`` write."""
    out: dict[str, Any] = {
        "kind": report.kind,
        "passed": report.passed,
        "verdict": verdict_to_dict(report.verdict),
        "settings": report.settings,
        "summary": shadow_summary_to_dict(report.summary),
        "gates": [gate_to_dict(g) for g in report.gates],
    }
    if report.timeline is not None:
        out["timeline"] = [canary_step_to_dict(step) for step in report.timeline]
    if report.decision is not None:
        out["promoted"] = report.decision.promoted and not report.decision.dry_run
    out["unmatched_inputs"] = [{"input": arg, "error": str(err)} for arg, err in report.unmatched]
    if report.summary.truth is not None:
        t = report.summary.truth
        out["truth"] = {"labels": str(report.truths.labels.source), "old": evaluation_to_dict(t.old), "new": evaluation_to_dict(t.new),
                        "map_drop": _round(t.map_drop, 6), "recall_drop": _round(t.recall_drop), "worst_recall_label": t.worst_recall_label,
                        "problems": [{"kind": p.kind, "file": p.file, "entry": p.entry, "message": p.message} for p in report.truths.problems]}
    out["images_listed"] = images_listed(report)
    out["images"] = [shadow_record_to_dict(r, report.truths) for r in report.records]
    return out


def images_listed(report) -> dict[str, Any]:
    """Which images a report lists: every one, or (a long replay) the errors and the most disagreeing,
    with where every row is (``--records``)."""
    records = report.settings.get("records")
    return {"listed": len(report.records), "of": report.summary.images, "complete": report.complete,
            "which": "every image" if report.complete else "images with an error and the most disagreeing", "records": records}


def record_truth(record, truths) -> dict[str, Any] | None:
    """Both versions on one image against its labels, and each disagreement marked an improvement or a regression."""
    from mldeploy.truth.evaluate import judge_changes, score_image

    found = truths.truth_of(record.item, record.old.detections.image_size)
    if found is None:
        return None
    old = score_image(record.source, found[0], found[1], record.old.detections)
    new = score_image(record.source, found[0], found[1], record.new.detections)
    changes = judge_changes(record.comparison, old, new) if record.comparison is not None else []
    return {"old": {"tp": old.tp, "fp": old.fp, "fn": old.fn}, "new": {"tp": new.tp, "fp": new.fp, "fn": new.fn},
            "improvements": sum(c["effect"] == "improvement" for c in changes), "regressions": sum(c["effect"] == "regression" for c in changes),
            "changes": changes}
