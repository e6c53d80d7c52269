"""A damaged or edited capture (issue: hardening, second round): one line and exit 2 naming the folder,
never "unexpected"; names read from the index never reach outside the folder; a replaced blob is an
error row, never a silent replay."""

import sqlite3
import subprocess
import sys

import pytest

from mldeploy.capture import CaptureStore
from mldeploy.detections import Detections
from tests.helpers import subprocess_env


@pytest.fixture
def capture(project_dir):
    """Three captured requests of faces@v1 (answers with no boxes: what is checked here is the folder)."""
    store = CaptureStore(project_dir / "cap")
    for path in sorted((project_dir / "photos").glob("*.jpg"))[:3]:
        store.add(path.read_bytes(), "faces", "v1", "live", Detections.empty((512, 512)), 0.02, shadow="v2")
    store.close()
    return project_dir / "cap"


def mldeploy(cwd, *args):
    return subprocess.run([sys.executable, "-m", "mldeploy", *map(str, args)], cwd=cwd, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)


def one_line_exit_2(result, *words):
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert "unexpected" not in errors[0] and all(w in errors[0] for w in words), errors





def _sql(folder, statement, *args):
    db = sqlite3.connect(folder / "capture.db")
    db.execute(statement, args)
    db.commit()
    db.close()


LIST, SUMMARY, PRUNE = ("capture", "list", "cap"), ("capture", "summary", "cap"), ("capture", "prune", "cap", "--all")
SHADOW = ("shadow", "--capture", "cap", "--new", "blind", "--old", "v1", "--gates", "none")


@pytest.mark.parametrize("damage, command", [
    ("noise", LIST), ("noise", SUMMARY), ("noise", PRUNE), ("noise", SHADOW),  # pages overwritten: every command reads the index
    ("answer", LIST), ("answer", SHADOW),  # a stored answer that is not JSON: the commands that read answers
    ("counter", SUMMARY),  # a counter that is not a number: the command that reads counters
])
def test_a_damaged_capture_index_is_one_line_and_exit_2(project_dir, capture, damage, command):
    if damage == "noise":
        db = sqlite3.connect(capture / "capture.db")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        data = bytearray((capture / "capture.db").read_bytes())
        for page in range(1, len(data) // 4096):
            data[page * 4096 + 100:page * 4096 + 4000] = bytes(range(256)) * 15 + bytes(range(60))
        (capture / "capture.db").write_bytes(bytes(data))
    elif damage == "answer":
        _sql(capture, "UPDATE captures SET answer = 'this is not JSON' WHERE id = 2")
    else:
        _sql(capture, "UPDATE counters SET value = 'many' WHERE name = 'captured'")
    one_line_exit_2(mldeploy(project_dir, *command), "cap")


def test_a_digest_that_climbs_out_of_the_folder_is_never_read_or_deleted(project_dir, capture):
    victim = project_dir / "victim.txt"
    victim.write_text("keep me")
    _sql(capture, "UPDATE blobs SET sha256 = '../../victim.txt' WHERE rowid = 1")
    _sql(capture, "UPDATE captures SET sha256 = '../../victim.txt' WHERE id = 1")
    one_line_exit_2(mldeploy(project_dir, "capture", "prune", "cap", "--all"), "cap")
    assert victim.read_text() == "keep me"
    one_line_exit_2(mldeploy(project_dir, "shadow", "--capture", "cap", "--new", "blind", "--old", "v1"), "cap")


def test_a_replaced_blob_is_an_error_row_never_a_silent_replay(project_dir, capture):
    (blob,) = [p for p in sorted((capture / "blobs").iterdir())][:1]
    blob.write_bytes((project_dir / "photos" / "rocket.jpg").read_bytes())  # a real image, but not the one captured
    result = mldeploy(project_dir, "shadow", "--capture", "cap", "--new", "blind", "--old", "v1", "--gates", "none")
    assert result.returncode == 1, result.stderr
    assert "does not hold the bytes captured" in result.stderr
