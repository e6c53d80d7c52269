"""Labels attached to a capture later (mldeploy.capture.truth): matched by the labelled file's digest,
by a digest in its name or by a client's request id; replaced when labelled again; gone with the image;
and an older capture (format 1) brought up to date without losing a request."""

import hashlib
import json
import sqlite3

import numpy as np
import pytest

from mldeploy.capture import CaptureStore
from mldeploy.capture.truth import attach_labels, truths_of
from mldeploy.detections import Detections
from mldeploy.errors import CaptureError
from mldeploy.truth.labels import load_labels

ANSWER = Detections([[10, 10, 50, 50]], [0.9], [0], ["red"], (320, 240))


def _coco(path, entries):
    """``entries``: (file_name, [(label, [x, y, w, h])])."""
    images, annotations = [], []
    for i, (name, boxes) in enumerate(entries, 1):
        images.append({"id": i, "file_name": name, "width": 320, "height": 240})
        for label, bbox in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1 if label == "red" else 2, "bbox": bbox,
                                "area": bbox[2] * bbox[3], "iscrowd": 0})
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}]}))
    return path


def test_entries_find_their_images_three_ways_and_the_rest_are_named(tmp_path):
    store = CaptureStore(tmp_path / "cap", 1 << 20)
    blobs = [bytes([n]) * 50 for n in range(4)]
    for n, data in enumerate(blobs):
        store.add(data, "colours", "v1", "live", ANSWER, 0.01, request_id=f"req-{n}")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "photo.png").write_bytes(blobs[0])
    digest = hashlib.sha256(blobs[1]).hexdigest()
    labels = _coco(tmp_path / "l.json", [("photo.png", [("red", [10, 10, 40, 40])]), (f"{digest[:12]}.png", [("blue", [1, 1, 5, 5])]),
                                         ("req-2.jpg", []), ("unknown.png", [("red", [0, 0, 3, 3])]), (f"{digest[:8]}.png", [])])
    done = attach_labels(store, load_labels(labels), images=tmp_path / "files")
    assert (done.added, done.replaced, done.batch) == (3, 0, 1)
    assert done.by == {"images": 1, "digest": 1, "request id": 1}
    assert sorted(p.entry for p in done.unmatched) == [f"{digest[:8]}.png", "unknown.png"]  # 8 hex digits is too short to trust
    truths = truths_of(store, store.records())
    assert sorted(truths) == [1, 2, 3] and truths[3].xyxy.shape == (0, 4)  # a background image is truth too: nothing to find
    assert truths[1].labels == ["red"] and truths[1].xyxy.tolist() == [[10, 10, 50, 50]]


def test_labelling_again_replaces_and_new_images_are_added(tmp_path):
    store = CaptureStore(tmp_path / "cap", 1 << 20)
    for n in range(3):
        store.add(bytes([n]) * 50, "colours", "v1", "live", ANSWER, 0.01, request_id=f"req-{n}")
    first = attach_labels(store, load_labels(_coco(tmp_path / "a.json", [("req-0", [("red", [0, 0, 9, 9])]), ("req-1", [])])))
    second = attach_labels(store, load_labels(_coco(tmp_path / "b.json", [("req-1", [("blue", [2, 2, 9, 9])]), ("req-2", [])])))
    assert (first.batch, first.added, first.replaced) == (1, 2, 0)
    assert (second.batch, second.added, second.replaced) == (2, 1, 1)
    truths = truths_of(store, store.records())
    assert truths[2].labels == ["blue"] and len(truths) == 3


def test_labels_go_with_their_image_and_a_read_only_capture_refuses_them(tmp_path):
    store = CaptureStore(tmp_path / "cap", 120)
    store.add(b"a" * 100, "colours", "v1", "live", ANSWER, 0.01, request_id="old")
    attach_labels(store, load_labels(_coco(tmp_path / "a.json", [("old", [])])))
    store.add(b"b" * 100, "colours", "v1", "live", ANSWER, 0.01)  # evicts the first image: its truth goes too
    assert store.truths() == {}
    store.close()
    reader = CaptureStore(tmp_path / "cap", write=False)
    with pytest.raises(CaptureError, match="read-only"):
        reader.set_truths([("x", "{}")], "f")


def test_a_format_1_capture_is_migrated_when_written_and_read_as_it_is_otherwise(tmp_path):
    from mldeploy.capture.index import SCHEMA

    folder = tmp_path / "cap"
    (folder / "blobs").mkdir(parents=True)
    db = sqlite3.connect(folder / "capture.db")
    old_schema = SCHEMA.replace(",\n    request_id TEXT\n", "\n").split("CREATE INDEX captures_by_request_id")[0]
    old_schema += SCHEMA[SCHEMA.index("CREATE TABLE counters"):]
    db.executescript(old_schema + "INSERT INTO meta VALUES ('created_at', '2026-01-01'), ('used_bytes', '0'); PRAGMA user_version = 1;")
    db.close()
    reader = CaptureStore(folder, write=False)  # read-only: left as it is, no request ids, no labels
    assert reader.format == 1 and reader.records() == [] and reader.truths() == {}
    reader.close()
    writer = CaptureStore(folder, 1 << 20)
    writer.add(b"x" * 10, "colours", "v1", "live", ANSWER, 0.01, request_id="r1")
    assert writer.format == 2 and writer.records()[0].request_id == "r1"
    assert sqlite3.connect(folder / "capture.db").execute("PRAGMA user_version").fetchone()[0] == 2


def test_yolo_labels_are_scaled_to_the_captured_images_size(tmp_path):
    store = CaptureStore(tmp_path / "cap", 1 << 20)
    store.add(b"y" * 20, "colours", "v1", "live", ANSWER, 0.01, request_id="req-9")
    folder = tmp_path / "yolo"
    folder.mkdir()
    (folder / "req-9.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (folder / "classes.txt").write_text("red\nblue\n")
    done = attach_labels(store, load_labels(folder))
    assert done.added == 1
    truth = truths_of(store, store.records())[1]
    assert np.allclose(truth.xyxy, [[120, 60, 200, 180]])  # 320 x 240, as the live answer recorded
