"""``mldeploy capture`` and ``shadow`` / ``canary --capture``, on a capture written through the library
(the server's tests write theirs over HTTP)."""

import json

import pytest

from mldeploy.capture import CaptureStore
from mldeploy.images import read_image
from mldeploy.models import load_detector


@pytest.fixture
def capture(project_dir, registry):
    """faces@v1's real answers on the sample photos, captured as a server would (and two people@v1 answers)."""
    store = CaptureStore(project_dir / "cap", budget_bytes=64 << 20)
    live = load_detector(registry.resolve("faces@v1"))
    photos = sorted((project_dir / "photos").glob("*.jpg"))
    for path in photos:
        detections, seconds = live.timed_detect(read_image(path))
        store.add(path.read_bytes(), "faces", "v1", "live", detections, seconds, shadow="v2")
    people = load_detector(registry.resolve("people@hog"))
    for path in photos[:2]:
        store.add(path.read_bytes(), "people", "hog", "live", people.detect(read_image(path)), 0.05)
    store.close()
    return project_dir / "cap", len(photos)


def test_summary_list_and_prune(cli, capture):
    folder, n = capture
    summary = cli("capture", "summary", folder, "--format", "json")
    assert summary.exit_code == 0
    info = json.loads(summary.output)
    assert info["requests"] == n + 2 and info["images"] == n
    assert {(g["model"], g["version"]): g["requests"] for g in info["groups"]} == {("faces", "v1"): n, ("people", "hog"): 2}
    (faces,) = [c for c in info["counters"] if c["shadow"]]
    assert (faces["captured"], faces["pending"], faces["compared"]) == (n, n, 0)
    table = cli("capture", "summary", folder)
    assert f"{n + 2} requests" in table.output and "live shadow coverage" in table.output
    listed = json.loads(cli("capture", "list", folder, "--model", "people", "--format", "json").output)["requests"]
    assert [r["id"] for r in listed] == [n + 2, n + 1] and all(r["model"] == "people" for r in listed)
    assert "faces@v1" in cli("capture", "list", folder, "-n", "3").output
    dry = cli("capture", "prune", folder, "--model", "people", "--all", "--dry-run")
    assert dry.exit_code == 0 and "would remove 2 requests" in dry.output
    assert "removed 2 requests" in cli("capture", "prune", folder, "--model", "people", "--all").output
    assert json.loads(cli("capture", "summary", folder, "-f", "json").output)["requests"] == n
    assert cli("capture", "prune", folder, "--older-than", "1x").exit_code == 2
    assert cli("capture", "prune", folder).exit_code == 2
    assert cli("capture", "list", folder.parent / "nothing").exit_code == 2


def test_shadow_against_the_recorded_answers(cli, capture):
    folder, n = capture
    same = cli("shadow", "--capture", folder, "--new", "v1", "--format", "json")
    assert same.exit_code == 0, same.output
    report = json.loads(same.stdout)
    assert report["summary"]["compared"] == n and report["summary"]["disagreeing_images"] == 0 and report["summary"]["mean_iou"] == 1.0
    assert {g["gate"]: g["status"] for g in report["gates"]}["max_p95_ratio"] == "not measured"
    assert report["verdict"]["headline"] == "PASS: all 5 gates measured passed (2 not measured)"
    blind = cli("shadow", "--capture", folder, "--new", "blind")
    assert blind.exit_code == 3 and "FAIL: --min-recall" in blind.output
    assert "faces@v1 (old, as answered live) vs faces@blind (new)" in " ".join(blind.output.split())


@pytest.mark.parametrize("args, message", [
    (["photos", "--capture", "cap", "--new", "v2"], "give images or --capture, not both"),
    (["--new", "v2"], "no images: give image files or folders, or --capture DIR"),
    (["--capture", "cap", "--new", "v2", "--old", "v9"], "has no answer of faces@v9; it has v1"),
    (["--capture", "cap", "--new", "shapes@v1"], "has no request of shapes: it holds faces"),
    (["--capture", "photos", "--new", "v2"], "photos is not a capture folder (no capture.db)"),
])
def test_capture_usage_errors(cli, capture, args, message):
    result = cli("shadow", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_several_live_versions_need_old(cli, capture, project_dir, registry):
    folder, n = capture
    store = CaptureStore(folder)
    store.add((project_dir / "photos" / "astronaut.jpg").read_bytes(), "faces", "blind", "live",
              load_detector(registry.resolve("faces@v1")).detect(read_image(project_dir / "photos" / "astronaut.jpg")), 0.01)
    store.close()
    result = cli("shadow", "--capture", folder, "--new", "v2")
    assert result.exit_code == 2 and "several faces versions: v1" in " ".join(result.output.split())
    chosen = cli("shadow", "--capture", folder, "--new", "v1", "--old", "blind", "-f", "json", "--gates", "none")
    assert chosen.exit_code == 0 and json.loads(chosen.stdout)["summary"]["compared"] == 1


def test_canary_on_a_capture_rolls_back_a_regression(cli, capture):
    folder, n = capture
    result = cli("canary", "--capture", folder, "--new", "blind", "--steps", "50,100")
    assert result.exit_code == 3
    history = cli("history", "faces", "--format", "json")
    assert json.loads(history.stdout)["history"][0]["action"] == "canary-rollback"
