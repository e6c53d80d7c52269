"""The capture folder: content addressing, the byte budget, the shadow's queue, pruning, and refusing
folders that are not captures."""

import os
import sqlite3

import pytest

from mldeploy.capture import COMPARED, PENDING, CaptureStore
from mldeploy.detections import Detections
from mldeploy.errors import CaptureError

ANSWER = Detections([[1.5, 2.25, 30.125, 40.0]], [0.87654321], [0], ["face"], (64, 48))


def test_answers_round_trip_exactly_and_equal_bytes_are_stored_once(tmp_path):
    store = CaptureStore(tmp_path / "cap", budget_bytes=10_000)
    first = store.add(b"x" * 100, "faces", "v1", "live", ANSWER, 0.02, shadow="v2")
    second = store.add(b"x" * 100, "faces", "v1", "live", ANSWER, 0.03, shadow="v2")
    assert (first.id, second.id, second.used_bytes) == (1, 2, 100)
    assert len(list((tmp_path / "cap" / "blobs").iterdir())) == 1
    record = store.records()[0]
    assert record.answer.xyxy.tolist() == ANSWER.xyxy.tolist() and record.answer.confidence[0] == ANSWER.confidence[0]
    assert record.answer.label.tolist() == ["face"] and record.answer.image_size == (64, 48)
    assert store.read_blob(record) == b"x" * 100


def test_the_budget_evicts_oldest_first_and_counts_what_the_shadow_lost(tmp_path):
    store = CaptureStore(tmp_path / "cap", budget_bytes=250)
    for n in range(5):
        store.add(bytes([n]) * 100, "faces", "v1", "live", ANSWER, 0.01, shadow="v2" if n else None)
    assert [r.id for r in store.records()] == [4, 5]
    assert store.used_bytes() == 200
    counters = store.counters()
    assert counters[("faces", "v1", "v2")] == {"captured": 4, "evicted": 2, "evicted_pending": 2}
    assert counters[("faces", "v1", "")] == {"captured": 1, "evicted": 1}
    added = store.add(b"z" * 300, "faces", "v1", "live", ANSWER, 0.01, shadow="v2")  # alone over the budget: not kept, counted
    assert added.id is None and added.evicted_pending == {("faces", "v1", "v2"): 1}
    assert [r.id for r in store.records()] == [4, 5]


def test_the_shadow_queue_settles_each_request_once(tmp_path):
    store = CaptureStore(tmp_path / "cap")
    for n in range(3):
        store.add(bytes([n]) * 10, "faces", "v1", "live", ANSWER, 0.01, shadow="v2")
    first = store.next_pending("faces", "v2")
    assert first.id == 1 and store.pending() == {("faces", "v1", "v2"): 3}
    assert store.settle(first.id, COMPARED, {"matched": 1})
    assert not store.settle(first.id, COMPARED, {"matched": 1})  # already settled
    assert store.next_pending("faces", "v2").id == 2 and store.next_pending("faces", "v3") is None
    assert store.attempt(2) == 1 and store.next_pending("faces", "v2").shadow_state == PENDING


def test_prune_by_age_size_model_and_dry_run(tmp_path):
    store = CaptureStore(tmp_path / "cap")
    for n in range(4):
        store.add(bytes([n]) * 100, "faces" if n < 3 else "people", "v1", "live", ANSWER, 0.01)
    assert store.prune(keep_bytes=150, dry_run=True) == (3, 300) and len(store.records()) == 4
    assert store.prune(older_than=3600) == (0, 0)
    assert store.prune(model="people", everything=True) == (1, 100)
    assert store.prune(keep_bytes=150) == (2, 200)
    assert [r.id for r in store.records()] == [3] and store.used_bytes() == 100
    assert sorted(p.name for p in (tmp_path / "cap" / "blobs").iterdir()) == [store.records()[0].sha256]
    assert store.prune(older_than=0) == (1, 100)


def test_folders_that_are_not_captures_are_refused_and_left_alone(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(CaptureError, match="not a capture folder and not empty"):
        CaptureStore(mine)
    with pytest.raises(CaptureError, match="no capture.db"):
        CaptureStore(mine, write=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CaptureError, match="is a file"):
        CaptureStore(tmp_path / "file")
    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "capture.db").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(CaptureError, match="not a capture index"):
        CaptureStore(other)
    newer = tmp_path / "newer"
    CaptureStore(newer).close()
    db = sqlite3.connect(newer / "capture.db")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    with pytest.raises(CaptureError, match="newer mldeploy"):
        CaptureStore(newer, write=False)
    assert (mine / "notes.txt").read_text() == "keep" and len(list(mine.iterdir())) == 1


def test_the_folder_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        store = CaptureStore(tmp_path / "cap")
        store.add(b"x" * 10, "faces", "v1", "live", ANSWER, 0.01)
    finally:
        os.umask(old)
    folder = tmp_path / "cap"
    assert folder.stat().st_mode & 0o777 == 0o700 and (folder / "blobs").stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in folder.rglob("*") if p.is_file())
