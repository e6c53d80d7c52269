"""Capture and the live shadow that drains it, on a real server (uvicorn on a loopback port)."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.helpers import as_unprivileged, subprocess_env
from tests.helpers import wait_until as helpers_wait_until

SLEEPY_TOML = """
[models.faces.sleepy]             # faces@v1's answers, 0.3 s slower: a shadow that falls behind
from = "faces@v1"
detector = "tests.helpers.flaky:SleepyDetector"
"""


def noise_jpegs(n, width=640, height=480, seed=0):
    """``n`` distinct JPEGs (random noise does not compress: about 250 KB each at 640x480)."""
    import cv2

    rng = np.random.default_rng(seed)
    return [cv2.imencode(".jpg", rng.integers(0, 256, (height, width, 3), dtype=np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            for _ in range(n)]


def post(server, data, name="upload.jpg", model="faces"):
    return server.client.post(f"/count-{model}/", files={"file": (name, data, "image/jpeg")})


def wait_until(predicate, timeout=90.0, every=0.25):
    return helpers_wait_until(predicate, timeout, every)


def drained(server, expected):
    """The shadow pair once every one of ``expected`` captured requests left the pending state."""
    def check():
        pairs = server.client.get("/models/faces/shadow").json()["pairs"]  # none yet: the captures are written just after the answers
        p = pairs[0] if len(pairs) == 1 else None
        return p if p is not None and p["captured"] == expected and p["pending"] == 0 else None
    return wait_until(check)


def drained_or_captured(server):
    pairs = server.client.get("/models/faces/shadow").json()["pairs"]
    return pairs[0]["captured"] if pairs else 0


def metric(server, name, **labels):
    text = server.client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def settled(server, model="faces") -> float:
    """Requests whose capture was written or failed."""
    return sum(metric(server, name, model=model) or 0 for name in ("mldeploy_captured_total", "mldeploy_capture_failed_total"))


def photos(project_dir):
    return [p.read_bytes() for p in sorted((project_dir / "photos").glob("*.jpg"))]


def test_coverage_under_load_then_idle(serve, project_dir):
    """Eight clients at once: every request is captured, and once the load stops the shadow compares them all."""
    server = serve("--model", "faces", "--shadow", "faces=blind", "--capture", "cap")
    images = photos(project_dir)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: post(server, images[i % len(images)]).status_code, range(48)))
    assert codes == [200] * 48
    p = drained(server, 48)
    assert (p["compared"], p["errors"], p["evicted"], p["coverage"]) == (48, 0, 0, 1.0)
    assert p["boxes"]["missing"] == p["boxes"]["old_boxes"] > 0  # faces@blind finds nothing: every live face is missing
    assert metric(server, "mldeploy_captured_total", model="faces") == 48
    assert metric(server, "mldeploy_shadow_pending", model="faces", shadow="blind") == 0
    compared = [metric(server, "mldeploy_shadow_comparisons_total", result=r) or 0 for r in ("agree", "disagree", "error")]
    assert compared[0] + compared[1] == 48 and compared[2] == 0


def test_the_byte_budget_evicts_the_oldest_and_counts_every_eviction(serve, project_dir):
    with open(project_dir / "mldeploy.toml", "a") as fh:
        fh.write(SLEEPY_TOML)
    server = serve("--model", "faces", "--shadow", "faces=sleepy", "--capture", "cap", "--capture-max-mb", "0.6")
    uploads = noise_jpegs(12)
    assert all(300_000 > len(u) > 150_000 for u in uploads)
    assert all(post(server, u).status_code == 200 for u in uploads)
    p = drained(server, 12)
    assert p["evicted"] > 0
    assert p["compared"] + p["errors"] + p["evicted"] == p["captured"] == 12  # nothing unaccounted for
    assert metric(server, "mldeploy_capture_evicted_total", model="faces") == p["evicted"]
    assert metric(server, "mldeploy_capture_bytes") <= 0.6 * 1024 * 1024
    blobs = list((project_dir / "cap" / "blobs").iterdir())
    assert sum(b.stat().st_size for b in blobs) <= 0.6 * 1024 * 1024
    # The newest requests are the ones kept.
    kept = {b.name for b in blobs}
    import hashlib

    assert hashlib.sha256(uploads[-1]).hexdigest() in kept and hashlib.sha256(uploads[0]).hexdigest() not in kept


def test_a_capture_replayed_offline_gives_the_live_shadow_figures(serve, project_dir):
    server = serve("--model", "faces", "--shadow", "faces=slow", "--capture", "cap")
    images = photos(project_dir)
    assert all(post(server, data).status_code == 200 for data in images)
    live = drained(server, len(images))
    server.stop()
    run = subprocess.run([sys.executable, "-m", "mldeploy", "shadow", "--capture", "cap", "--new", "slow", "--format", "json"],
                         cwd=project_dir, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode in (0, 3), run.stderr
    offline = json.loads(run.stdout)
    assert offline["settings"]["capture"] == "cap" and offline["settings"]["old"] == "faces@v1"
    assert offline["summary"]["compared"] == live["compared"] == len(images)
    assert offline["summary"]["boxes"] == {k.replace("_boxes", ""): v for k, v in live["boxes"].items()}
    for key in ("precision", "recall", "mean_iou", "drift", "disagreement"):
        assert offline["summary"][key] == pytest.approx(live[key], abs=5e-5), key  # the JSON report rounds to 4 places
    gates = {g["gate"]: g["status"] for g in offline["gates"]}
    assert gates["max_latency_ratio"] == gates["max_p95_ratio"] == "not measured"  # the old version did not run again
    assert all(r["new"]["model"] == "faces@slow" and r["image"] == f"#{r['capture']['id']} {r['capture']['sha256'][:12]}" for r in offline["images"])


def test_a_crashed_shadow_process_or_server_loses_nothing_captured(serve, project_dir):
    with open(project_dir / "mldeploy.toml", "a") as fh:
        fh.write(SLEEPY_TOML)
    server = serve("--model", "faces", "--shadow", "faces=sleepy", "--capture", "cap")
    images = photos(project_dir)
    assert all(post(server, data).status_code == 200 for data in images)
    # kill -9 the shadow's process while it works through the capture
    children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()
    shadow = [pid for pid in children if "resource_tracker" not in open(f"/proc/{pid}/cmdline").read()]
    assert len(shadow) == 1
    os.kill(int(shadow[0]), signal.SIGKILL)
    p = drained(server, len(images))
    assert (p["compared"], p["errors"]) == (len(images), 0)
    # kill -9 the server with requests still pending; a new server on the same capture finishes them
    assert all(post(server, data).status_code == 200 for data in images)
    wait_until(lambda: drained_or_captured(server) == 2 * len(images), 10)  # a request is captured just after its answer is sent
    server.stop(signal.SIGKILL)
    db = sqlite3.connect(project_dir / "cap" / "capture.db")
    pending = db.execute("SELECT count(*) FROM captures WHERE shadow_state = 'pending'").fetchone()[0]
    db.close()
    assert pending > 0
    again = serve("--model", "faces", "--shadow", "faces=sleepy", "--capture", "cap")
    wait_until(lambda: (server_pairs := again.client.get("/models/faces/shadow").json()["pairs"]) and server_pairs[0]["pending"] == 0)
    db = sqlite3.connect(project_dir / "cap" / "capture.db")
    states = dict(db.execute("SELECT shadow_state, count(*) FROM captures GROUP BY shadow_state").fetchall())
    assert states == {"compared": 2 * len(images)}


def test_capture_files_are_private_and_never_carry_client_names(serve, project_dir):
    server = serve("--model", "faces", "--capture", "cap", "--capture-rate", "0.5", wrap=lambda cmd: ["sh", "-c", 'umask 000; exec "$@"', "sh", *cmd])
    data = photos(project_dir)[0]
    for n in range(4):
        assert post(server, data, name=f"Patient-Jane-Doe-{n}.jpg").status_code == 200
    server.stop()
    folder = project_dir / "cap"
    files = [p for p in folder.rglob("*")]
    assert len([p for p in (folder / "blobs").iterdir()]) == 1  # content-addressed: one image, stored once
    assert not any("Jane" in p.name for p in files)
    assert all(b"Jane" not in p.read_bytes() for p in files if p.is_file())
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700) and oct((folder / "blobs").stat().st_mode & 0o777) == oct(0o700)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files if p.is_file()), [(p.name, oct(p.stat().st_mode)) for p in files]
    db = sqlite3.connect(folder / "capture.db")
    assert db.execute("SELECT count(*) FROM captures").fetchone()[0] == 2  # --capture-rate 0.5: every second request


def _serve_and_break(serve, project_dir, folder, breaks, **kwargs):
    server = serve("--model", "faces", "--shadow", "faces=blind", "--capture", folder, **kwargs)
    assert post(server, photos(project_dir)[0]).status_code == 200
    wait_until(lambda: metric(server, "mldeploy_captured_total", model="faces") == 1, 10)
    breaks()
    codes = [post(server, data).status_code for data in noise_jpegs(5, 64, 48, seed=1)]  # new images: each needs a new file
    wait_until(lambda: settled(server) >= 6, 10)  # each capture is written (or fails) just after its answer
    return server, codes


def test_a_capture_folder_deleted_while_serving_is_one_log_line(serve, project_dir):
    import shutil

    server, codes = _serve_and_break(serve, project_dir, "cap", lambda: shutil.rmtree(project_dir / "cap"))
    assert codes == [200] * 5
    log = server.output()
    assert log.count("capture: cannot write to capture folder cap") == 1, log
    assert metric(server, "mldeploy_capture_failed_total", model="faces") == 5


def test_a_read_only_capture_folder_is_one_log_line(serve, project_dir):
    wrap = as_unprivileged
    if wrap(["true"]) is None:
        pytest.skip("cannot drop root's file permission override here (no setpriv)")
    server, codes = _serve_and_break(serve, project_dir, "cap", lambda: os.chmod(project_dir / "cap" / "blobs", 0o500), wrap=wrap)
    assert codes == [200] * 5
    assert server.output().count("capture: cannot write to capture folder cap: Permission denied") == 1, server.output()
    os.chmod(project_dir / "cap" / "blobs", 0o700)
    assert post(server, noise_jpegs(1, 64, 48, seed=2)[0]).status_code == 200
    wait_until(lambda: "capture: writing to cap again" in server.output(), 10)


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def test_a_full_disk_is_one_log_line_and_never_a_failed_request(serve, project_dir, small_disk):
    server = serve("--model", "faces", "--shadow", "faces=blind", "--capture", small_disk / "cap")
    uploads = noise_jpegs(8)  # 2 MB onto a 1 MB disk
    codes = [post(server, u).status_code for u in uploads]
    assert codes == [200] * 8
    wait_until(lambda: settled(server) >= 8, 10)
    log = server.output()
    assert log.count("No space left on device") == 1, log
    assert metric(server, "mldeploy_capture_failed_total", model="faces") >= 4


def test_shadow_mode_always_compares_beside_the_traffic(serve, project_dir):
    server = serve("--model", "faces", "--shadow", "faces=blind", "--shadow-mode", "always")
    images = photos(project_dir)
    assert all(post(server, data).status_code == 200 for data in images)
    p = drained(server, len(images))
    assert p["compared"] == len(images), (p, server.output()[-3000:])


def test_serve_refuses_a_folder_that_is_not_a_capture(serve, project_dir):
    (project_dir / "notes").mkdir()
    (project_dir / "notes" / "todo.txt").write_text("mine")
    run = subprocess.run([sys.executable, "-m", "mldeploy", "serve", "--capture", "notes", "--port", "0"], cwd=project_dir, env=subprocess_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "notes is not a capture folder and not empty" in run.stderr
    assert (project_dir / "notes" / "todo.txt").read_text() == "mine" and len(list((project_dir / "notes").iterdir())) == 1


def test_capture_settings_come_from_mldeploy_toml(serve, project_dir):
    with open(project_dir / "mldeploy.toml", "a") as fh:
        fh.write('\n[capture]\ndir = "traffic"\nrate = 0.5\nmax_mb = 64\n')
    server = serve("--model", "faces")
    data = photos(project_dir)[0]
    assert all(post(server, data).status_code == 200 for _ in range(4))
    wait_until(lambda: metric(server, "mldeploy_captured_total", model="faces") == 2, 10)
    store_rows = sqlite3.connect(project_dir / "traffic" / "capture.db").execute("SELECT count(*) FROM captures").fetchone()[0]
    assert store_rows == 2


@pytest.mark.parametrize("table, message", [
    ('[capture]\nspeed = 1\n', "[capture]: unknown key 'speed'"),
    ('[capture]\nrate = "all"\n', "[capture] rate must be a number"),
    ('[capture]\nrate = 2\n', "--capture-rate 2: must be a share from 0 to 1"),
    ('[capture]\nshadow_mode = "sometimes"\n', "--shadow-mode 'sometimes': choose idle or always"),
])
def test_bad_capture_settings_are_one_line_exit_2(project_dir, table, message):
    with open(project_dir / "mldeploy.toml", "a") as fh:
        fh.write("\n" + table)
    run = subprocess.run([sys.executable, "-m", "mldeploy", "serve", "--port", "0"], cwd=project_dir, env=subprocess_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and message in " ".join(run.stderr.split()), run.stderr


def test_shadow_counters_add_up_after_a_kill_9_and_a_restart(serve, project_dir):
    """30 uploads at concurrency 4, kill -9 at once, the same flags again: captured = compared + errors +
    pending + evicted, and coverage never passes 1 (it read 1.16 in 3 of 5 runs: the server's counters of
    what it captured died with it, the capture's did not)."""
    with open(project_dir / "mldeploy.toml", "a") as fh:
        fh.write(SLEEPY_TOML)
    server = serve("--model", "faces", "--shadow", "faces=sleepy", "--capture", "cap")
    uploads = noise_jpegs(30, 64, 48, seed=7)
    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda data: post(server, data).status_code, uploads)) == {200}
    server.stop(signal.SIGKILL)
    again = serve("--model", "faces", "--shadow", "faces=sleepy", "--capture", "cap")
    pair = wait_until(lambda: (p := again.client.get("/models/faces/shadow").json()["pairs"]) and p[0]["pending"] == 0 and p[0], 90)
    db = sqlite3.connect(project_dir / "cap" / "capture.db")
    stored = db.execute("SELECT count(*) FROM captures WHERE shadow IS NOT NULL").fetchone()[0]
    db.close()
    assert pair["captured"] == pair["compared"] + pair["errors"] + pair["pending"] + pair["evicted"] == stored, pair
    assert pair["coverage"] <= 1


def test_request_ids_are_kept_and_the_server_reports_accuracy_on_labelled_requests(serve, project_dir, cli):
    """A client's X-Request-Id comes back in the answer and is kept in the capture; labels quoting it
    arrive later, and the running server scores each version on the labelled requests it answered."""
    import json

    from tests.helpers.colours import declare, scene

    declare(project_dir)
    server = serve("--model", "colours", "--capture", "cap")
    rng = np.random.default_rng(5)
    scenes = [scene(rng, n) for n in range(6)]
    for s in scenes:
        r = server.client.post("/count-colours/", files={"file": ("x.png", s.png)}, headers={"X-Request-Id": s.request_id})
        assert r.status_code == 200 and r.json()["request_id"] == s.request_id and r.headers["x-request-id"] == s.request_id
    made = server.client.post("/count-colours/", files={"file": ("x.png", scenes[0].png)}).json()["request_id"]
    assert len(made) == 32  # none sent: one made, to quote later
    bad = server.client.post("/count-colours/", files={"file": ("x.png", scenes[0].png)}, headers={"X-Request-Id": "a b"})
    assert bad.status_code == 422 and "X-Request-Id" in bad.json()["error"]["message"]
    before = server.client.get("/models/colours/accuracy").json()
    assert before["labelled"] == 0 and before["versions"] == []

    deadline = time.monotonic() + 30  # captured after each response, in the background
    from tests.helpers.colours import write_coco

    labels = write_coco(project_dir / "late.json", scenes[:4])
    while time.monotonic() < deadline:
        result = cli("capture", "label", "cap", "--labels", labels)
        if result.exit_code == 0:
            break
        time.sleep(0.2)
    assert result.exit_code == 0 and "4 by request id" in result.stdout
    after = server.client.get("/models/colours/accuracy").json()
    assert after["labelled"] == 5 and after["requests"] == 7  # truth belongs to the image: scenes[0] was sent twice
    (row,) = after["versions"]
    assert row["version"] == "colours@v1" and row["requests"] == 5 and row["recall"] == 1.0 and row["precision"] == 1.0
    assert json.loads(json.dumps(after))  # plain JSON
