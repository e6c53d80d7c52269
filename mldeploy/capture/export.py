"""Captured images written out for review, with the versions' boxes as pre-annotations, in formats a
labelling tool imports: COCO (CVAT, FiftyOne, Label Studio's COCO import) and Label Studio's tasks
with one prediction per version.

Each image is written as ``images/<sha256>.<ext>``: the name is its digest, so the labels a reviewer
exports come back to the same captured requests with ``mldeploy capture label`` (matched by digest),
whatever the tool. ``manifest.csv`` says why each image was chosen.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mldeploy.capture.records import CaptureRecord
from mldeploy.detections import Detections
from mldeploy.errors import OutputError

FORMATS = ("coco", "label-studio")


def extension(data: bytes) -> str:
    """The file extension of an image's bytes, by their first bytes (never a client's file name)."""
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[:2] == b"BM":
        return ".bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    if data[:4] == b"GIF8":
        return ".gif"
    return ".bin"


@dataclass(frozen=True)
class Chosen:
    """One image chosen for review: its request, why (the score), and each version's boxes."""

    record: CaptureRecord
    score: float  # what it was chosen on (disagreements, lowest confidence, a random draw)
    answers: tuple[tuple[str, Detections], ...]  # (model@version, boxes): the recorded one first


def _coco(chosen: Sequence[Chosen], names: dict[str, str], classes: list[str]) -> dict:
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(classes)]
    ids = {c: i + 1 for i, c in enumerate(classes)}
    images, annotations = [], []
    for n, c in enumerate(chosen, 1):
        w, h = c.record.answer.image_size
        images.append({"id": n, "file_name": names[c.record.sha256], "width": int(w), "height": int(h)})
        for version, d in c.answers:
            for (x1, y1, x2, y2), conf, label in zip(d.xyxy.tolist(), d.confidence.tolist(), d.label):
                annotations.append({"id": len(annotations) + 1, "image_id": n, "category_id": ids[str(label)],
                                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                    "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "score": round(float(conf), 4),
                                    "attributes": {"version": version}})
    return {"info": {"description": "mldeploy capture export: pre-annotations, one box per version that found it"},
            "images": images, "annotations": annotations, "categories": categories}


def _label_studio(chosen: Sequence[Chosen], names: dict[str, str]) -> list[dict]:
    tasks = []
    for c in chosen:
        w, h = c.record.answer.image_size
        predictions = []
        for version, d in c.answers:
            result = []
            for i, ((x1, y1, x2, y2), conf, label) in enumerate(zip(d.xyxy.tolist(), d.confidence.tolist(), d.label)):
                result.append({"id": f"{version}-{i}", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
                               "original_width": int(w), "original_height": int(h), "image_rotation": 0, "score": round(float(conf), 4),
                               "value": {"x": 100 * x1 / w, "y": 100 * y1 / h, "width": 100 * (x2 - x1) / w, "height": 100 * (y2 - y1) / h,
                                         "rotation": 0, "rectanglelabels": [str(label)]}})
            predictions.append({"model_version": version, "score": round(float(d.confidence.mean()), 4) if len(d) else 0.0, "result": result})
        tasks.append({"data": {"image": f"/data/local-files/?d=images/{names[c.record.sha256]}", "sha256": c.record.sha256,
                               "request_id": c.record.request_id, "capture_id": c.record.id}, "predictions": predictions})
    return tasks


def label_config(classes: Sequence[str]) -> str:
    """A Label Studio labelling config for boxes of ``classes``."""
    labels = "\n".join(f'    <Label value="{c}"/>' for c in classes)
    return f'<View>\n  <Image name="image" value="$image"/>\n  <RectangleLabels name="label" toName="image">\n{labels}\n  </RectangleLabels>\n</View>\n'


def write_export(folder: Path, chosen: Sequence[Chosen], read_blob, classes: Sequence[str], fmt: str, how: str) -> Path:
    """Write the chosen images, their pre-annotations in ``fmt`` and ``manifest.csv`` into ``folder`` (new,
    or empty: never over a reviewer's earlier work).

    Raises:
        OutputError: ``folder`` holds files already, or cannot be written.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OutputError(f"{folder} is not an empty folder: an export never writes over earlier work (choose a new --to)")
    try:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        names = {}
        for c in chosen:
            data = read_blob(c.record)
            name = f"{c.record.sha256}{extension(data)}"
            names[c.record.sha256] = name
            path = folder / "images" / name
            with open(path, "xb") as fh:
                fh.write(data)
        used = list(dict.fromkeys([*classes, *(str(label) for c in chosen for _, d in c.answers for label in d.label)]))
        if fmt == "coco":
            (folder / "annotations.json").write_text(json.dumps(_coco(chosen, names, used), indent=1))
        else:
            (folder / "tasks.json").write_text(json.dumps(_label_studio(chosen, names), indent=1))
            (folder / "label_config.xml").write_text(label_config(used))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["file", "sha256", "request_id", "capture_id", "captured_at", "answered_by", "chosen_by", "score",
                         *(f"boxes {v}" for v, _ in (chosen[0].answers if chosen else ()))])
        for c in chosen:
            r = c.record
            writer.writerow([f"images/{names[r.sha256]}", r.sha256, r.request_id or "", r.id, r.captured_at, r.ref, how, f"{c.score:.4f}",
                             *(len(d) for _, d in c.answers)])
        (folder / "manifest.csv").write_text(out.getvalue())
    except OSError as exc:
        raise OutputError(f"cannot write the export to {folder}: {exc.strerror or exc}") from None
    os.chmod(folder, 0o700)  # captured images are users' data, as in the capture itself
    return folder
