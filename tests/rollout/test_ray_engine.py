"""The Ray engine against the local one, on a real local Ray cluster (bound to 127.0.0.1; no network)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import subprocess_env

pytest.importorskip("ray", reason="the Ray extra is not installed: pip install 'mldeploy[ray]'")

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def mldeploy(project_dir, *args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "mldeploy", *map(str, args)], cwd=project_dir, env=subprocess_env(**RAY_ENV, **(env or {})),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def with_bad_files(project_dir):
    photos = project_dir / "photos"
    (photos / "notes.jpg").write_text("not an image at all")
    data = (photos / "astronaut.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (photos / "empty.png").write_bytes(b"")
    return photos


def agreement(report):
    s = dict(report["summary"])
    s.pop("latency", None)
    return s, [(i["image"], i.get("error"), i.get("comparison", {}).get("matched"), i.get("comparison", {}).get("missing"))
               for i in report["images"]]


def test_ray_and_local_give_identical_summaries_with_bad_files(project_dir, with_bad_files):
    args = ("shadow", "photos", "shapes", "--new", "blind", "--gates", "none", "--format", "json")
    local = mldeploy(project_dir, *args)
    ray = mldeploy(project_dir, *args, "--engine", "ray", "--actor-cpus", "0.25")
    assert local.returncode == ray.returncode == 1, ray.stderr  # the bad files are counted errors, the rest is compared
    local_report, ray_report = json.loads(local.stdout), json.loads(ray.stdout)
    assert ray_report["settings"]["engine"] == "ray"
    assert agreement(ray_report) == agreement(local_report)
    assert local_report["summary"]["unreadable"] == 3 and local_report["summary"]["compared"] > 5
    for message in ("notes.jpg: not an image mldeploy reads", "empty.png: empty file"):
        assert message in ray.stderr, ray.stderr


def test_detect_runs_on_ray_through_the_same_engine_seam(project_dir, with_bad_files):
    """``detect --engine ray``: the same results, in input order, and the same errors as the local engine."""
    args = ("detect", "photos", "shapes", "--model", "faces-haar@default", "--format", "json")  # answers that do not depend on threads
    local, ray = mldeploy(project_dir, *args), mldeploy(project_dir, *args, "--engine", "ray", "--actor-cpus", "0.25")
    assert local.returncode == ray.returncode == 1, ray.stderr  # the bad files fail, each named
    strip = lambda doc: [{k: v for k, v in r.items() if k != "inference_ms"} for r in doc["results"]]  # noqa: E731
    assert strip(json.loads(ray.stdout)) == strip(json.loads(local.stdout))
    assert "notes.jpg: not an image mldeploy reads" in ray.stderr
    saving = mldeploy(project_dir, "detect", "shapes", "--engine", "ray", "--save", "out")
    assert saving.returncode == 2 and "--save writes annotated copies from this machine" in saving.stderr


def test_an_address_where_nothing_listens_is_one_line_exit_2_within_seconds(project_dir):
    started = time.monotonic()
    result = mldeploy(project_dir, "shadow", "photos", "--new", "blind", "--engine", "ray", "--address", "127.0.0.1:1", timeout=120)
    assert result.returncode == 2 and "--address 127.0.0.1:1: cannot connect" in result.stderr, result.stderr[-2000:]
    assert time.monotonic() - started < 60  # it retried for minutes before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads Linux's /proc")
def test_a_driver_killed_with_kill_9_leaves_no_ray_process_behind(project_dir):
    """Ray's DashboardAgent and RuntimeEnvAgent outlived a kill -9 of the driver for good; the reaper
    mldeploy starts beside its own cluster ends them."""
    from mldeploy.rollout.engines.ray import _processes_under
    from tests.helpers import wait_until

    driver = subprocess.Popen([sys.executable, "-m", "mldeploy", "shadow", "photos", "--new", "blind", "--engine", "ray", "--actor-cpus", "0.25",
                               "--no-progress"], cwd=project_dir, env=subprocess_env(**RAY_ENV), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the run is under way once the cluster is up and mldeploy's reaper beside it
        wait_until(lambda: [e for e in _processes_under(driver.pid) if b"sys.stdin.buffer.read()" in _cmdline(e)], 60, 0.2)
        cluster = [e for e in _processes_under(driver.pid) if b"sys.stdin.buffer.read()" not in _cmdline(e)]
        assert any(b"raylet" in _cmdline(e) for e in cluster)
    finally:
        driver.kill()
        driver.wait(30)
    alive = lambda: [e for e in cluster if _cmdline(e) and _started(e)]  # noqa: E731
    wait_until(lambda: not alive(), 30, 0.5)


def _cmdline(entry: str) -> bytes:
    try:
        with open(f"/proc/{entry.split(':')[0]}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _started(entry: str) -> bool:
    """The process of ``pid:start time`` is still the one listed (not a new one with its number)."""
    pid, started = entry.split(":")
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19] == started
    except OSError:
        return False


def test_a_pool_that_starves_reading_is_refused(project_dir):
    result = mldeploy(project_dir, "shadow", "photos", "--new", "blind", "--engine", "ray", "--actors", "2", "--actor-cpus", "64")
    assert result.returncode == 2
    assert "leaves no CPU for reading images" in result.stderr


def test_engine_options_without_ray_and_a_missing_extra(project_dir, tmp_path):
    assert mldeploy(project_dir, "shadow", "photos", "--new", "blind", "--address", "auto").returncode == 2
    blocker = tmp_path / "blocked"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('No module named ray (blocked by the test)')\n")
    result = mldeploy(project_dir, "shadow", "photos", "--new", "blind", "--engine", "ray",
                      env={"PYTHONPATH": f"{blocker}{os.pathsep}{subprocess_env()['PYTHONPATH']}"})
    assert result.returncode == 2 and "pip install 'mldeploy[ray]'" in result.stderr
    help_text = mldeploy(project_dir, "--help")
    assert help_text.returncode == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_address_of_a_head_node_on_the_loopback(project_dir):
    """A head node the test starts on 127.0.0.1 (with token authentication, Ray's default), and stops by its PID."""
    import shutil
    import tempfile

    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # Ray's socket paths must stay under 108 characters: not under pytest's tmp_path
    log = open(os.path.join(temp, "head.log"), "w")
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", f"--port={port}", "--num-cpus", "2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                            env=subprocess_env(**RAY_ENV, RAY_AUTH_MODE="token"), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Ray runtime started" not in open(log.name).read():
            assert head.poll() is None, open(log.name).read()[-2000:]
            time.sleep(0.5)
        result = mldeploy(project_dir, "shadow", "shapes", "--model", "shapes", "--new", "blind", "--engine", "ray", "--address", f"127.0.0.1:{port}",
                          "--actors", "1", "--actor-cpus", "0.5", "--format", "json", env={"RAY_AUTH_MODE": "token"})
        assert result.returncode == 3, result.stderr  # the blind version fails its recall gate, on the cluster
        report = json.loads(result.stdout)
        assert report["settings"]["address"] == f"127.0.0.1:{port}" and report["summary"]["recall"] == 0
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # this head node and what it started, by its PID: never another cluster
        head.wait(30)
        subprocess.run(["pkill", "-9", "-f", temp])  # its GCS and raylet left the group: they carry its temp folder in their arguments
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_canary_on_ray_walks_the_same_steps_as_local(project_dir):
    args = ("canary", "shapes", "photos", "--model", "shapes", "--new", "blind", "--steps", "30,60,100", "--dry-run", "--gates", "none",
            "--min-recall", "0.9", "--format", "json")
    local, ray = mldeploy(project_dir, *args), mldeploy(project_dir, *args, "--engine", "ray", "--actor-cpus", "0.25")
    assert local.returncode == ray.returncode == 3, ray.stderr
    steps = [json.loads(r.stdout)["timeline"] for r in (local, ray)]

    def shape(timeline):
        return [(s["share"], s["canary_requests"], s["verdict"], s.get("summary", {}).get("recall") if s.get("summary") else None) for s in timeline]

    assert shape(steps[1]) == shape(steps[0])
    assert json.loads(ray.stdout)["settings"]["engine"] == "ray"


def test_an_actor_killed_mid_run_neither_loses_nor_duplicates_an_image(project_dir):
    """kill -9 a replay actor while it works: Ray Data starts another and replays the unfinished batch."""
    import shutil

    many = project_dir / "many"
    many.mkdir()
    photos = sorted((project_dir / "photos").glob("*.jpg"))
    for n in range(40):
        shutil.copy(photos[n % len(photos)], many / f"{n:02d}-{photos[n % len(photos)].name}")
    args = ("shadow", "many", "--new", "slow", "--gates", "none", "--format", "json")  # faces@slow: about 0.3 s an image
    command = [sys.executable, "-m", "mldeploy", *args, "--engine", "ray", "--actors", "1", "--actor-cpus", "0.5", "--records", "rows"]
    run = subprocess.Popen(command, cwd=project_dir, env=subprocess_env(**RAY_ENV), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and run.poll() is None:
        if subprocess.run(["pgrep", "-f", "ReplayActor"], capture_output=True).returncode == 0:
            time.sleep(4)  # into its batches; then the actor alive now (the one first seen may have been replaced)
            for pid in subprocess.run(["pgrep", "-f", "ReplayActor"], capture_output=True, text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:  # gone in the meantime: look again
                    continue
                killed = pid
                break
        time.sleep(0.2)
    out, err = run.communicate(timeout=300)
    assert killed is not None, "no actor process was seen"
    assert run.returncode == 0 and out.startswith("{"), (out[:2000], err[-2000:])
    ray_report = json.loads(out)
    names = [i["image"] for i in ray_report["images"]]
    assert len(names) == len(set(names)) == 40
    from mldeploy.report.records import read_records

    rows = read_records(project_dir / "rows")  # written as rows arrived: a replayed batch must not add rows twice
    assert sorted(row["index"] for row in rows) == list(range(40)) and sorted(row["image"] for row in rows) == sorted(names)
    local = mldeploy(project_dir, *args)
    assert local.returncode == 0, local.stderr[-2000:]
    assert agreement(ray_report) == agreement(json.loads(local.stdout))


def test_eval_on_ray_scores_like_local(project_dir, with_bad_files):
    args = ("eval", "photos", "--labels", "photos/labels/faces.json", "--format", "json")
    local, ray = mldeploy(project_dir, *args), mldeploy(project_dir, *args, "--engine", "ray", "--actor-cpus", "0.25")
    assert local.returncode == ray.returncode == 1, ray.stderr  # the three bad files have no labels and cannot be read
    local_report, ray_report = json.loads(local.stdout), json.loads(ray.stdout)
    assert ray_report["settings"]["engine"] == "ray"
    for key in ("summary", "images", "problems", "failed"):
        assert ray_report[key] == local_report[key], key
    assert ray_report["summary"]["tp"] == 2 and len(ray_report["failed"]) == 3


def test_objects_in_s3_replay_on_ray_as_on_the_local_engine(project_dir):
    """Ray Data reads the objects through the same pyarrow filesystem (moto's S3 server on 127.0.0.1); an
    object a manifest names but the bucket lacks is an error row on both engines, not a failed dataset."""
    pytest.importorskip("moto.server", reason="the S3 tests need moto's server: pip install -e '.[test]'")
    from tests.helpers import PHOTOS
    from tests.helpers.s3 import s3_server, upload

    with s3_server() as env:
        upload(env, "golden", {**{f"v1/{name}": project_dir / "photos" / name for name in PHOTOS}, "v1/cut.jpg": b"\xff\xd8\xff junk"})
        (project_dir / "more.txt").write_text("s3://golden/v1/camera.jpg\ns3://golden/v1/gone.jpg\n")  # camera.jpg is listed once
        args = ("shadow", "s3://golden/v1", "@more.txt", "--new", "blind", "--gates", "none", "--format", "json")
        local = mldeploy(project_dir, *args, env=env)
        ray = mldeploy(project_dir, *args, "--engine", "ray", "--actor-cpus", "0.25", env=env)
    assert local.returncode == ray.returncode == 1, ray.stderr[-3000:]
    local_report, ray_report = json.loads(local.stdout), json.loads(ray.stdout)
    assert agreement(ray_report) == agreement(local_report)
    assert local_report["summary"]["images"] == 7 and local_report["summary"]["unreadable"] == 2
    assert "s3://golden/v1/gone.jpg: no such object" in ray.stderr and "s3://golden/v1/gone.jpg: no such object" in local.stderr


def test_a_capture_replays_on_ray_as_on_the_local_engine(project_dir, registry):
    """The old answers are the recorded ones (faces@v1 never runs on the cluster); an image sent twice is
    stored once and read once, and answers both requests."""
    from mldeploy.capture import CaptureStore
    from mldeploy.images import read_image
    from mldeploy.models import load_detector

    store = CaptureStore(project_dir / "cap", budget_bytes=64 << 20)
    live = load_detector(registry.resolve("faces@v1"))
    photos = sorted((project_dir / "photos").glob("*.jpg"))
    for path in [*photos, photos[0]]:
        detections, seconds = live.timed_detect(read_image(path))
        store.add(path.read_bytes(), "faces", "v1", "live", detections, seconds, shadow="v2")
    store.close()
    args = ("shadow", "--capture", "cap", "--new", "v1", "--format", "json")  # faces@v1 again, against what it answered live
    local, ray = mldeploy(project_dir, *args), mldeploy(project_dir, *args, "--engine", "ray", "--actor-cpus", "0.25")
    assert local.returncode == ray.returncode == 0, ray.stderr[-3000:]
    local_report, ray_report = json.loads(local.stdout), json.loads(ray.stdout)
    assert agreement(ray_report) == agreement(local_report) and ray_report["summary"]["compared"] == 6
    assert ray_report["summary"]["boxes"]["matched"] == 4 and ray_report["summary"]["disagreeing_images"] == 0
    assert ray_report["summary"]["latency"]["paired_images"] == 0  # the old side did not run here: no latency pairs
    canary = ("canary", "--capture", "cap", "--new", "blind", "--steps", "50,100", "--dry-run", "--format", "json")
    steps = [json.loads(mldeploy(project_dir, *canary, *engine).stdout)["timeline"] for engine in ((), ("--engine", "ray", "--actor-cpus", "0.25"))]
    assert [(s["canary_requests"], s["verdict"]) for s in steps[1]] == [(s["canary_requests"], s["verdict"]) for s in steps[0]]
    assert steps[0][0]["verdict"] == "fail"  # blind finds none of the recorded faces: the first step stops the rollout


def test_bench_runs_on_ray_through_the_same_engine_seam(project_dir):
    """``bench --engine ray``: each (version, threads) job in a Ray worker of its own, with the same
    answers (so the same accuracy) as the local engine; memory is the worker's."""
    args = ("bench", "shapes", "-m", "shapes", "--versions", "v1,blind", "--requests", "8", "--format", "json", "--no-progress")
    local, ray = mldeploy(project_dir, *args), mldeploy(project_dir, *args, "--engine", "ray")
    assert local.returncode == 0 and ray.returncode == 0, ray.stderr[-2000:]
    by_version = [{row["version"]: (row["f1"], row["drift"], row["errors"]) for row in json.loads(r.stdout)["candidates"]} for r in (local, ray)]
    assert by_version[0] == by_version[1] and by_version[0]["shapes@blind"][0] == 0
    doc = json.loads(ray.stdout)
    assert doc["settings"]["engine"] == "ray" and all(row["peak_mb"] > 50 for row in doc["candidates"])
