"""Closing the loop, planted: a capture of 300 requests built here (a real detector of red and blue
squares answered each), labels that arrive in two batches, a version that regresses on one class only
(colours@v2 never reports blue), and a traffic shift (darker images) with no model change. Each is
found, and the two are told apart."""

import hashlib
import json

import numpy as np
import pytest

from tests.helpers.colours import declare, fill_capture, scene, write_coco


@pytest.fixture
def world(project_dir):
    """The capture (200 bright requests on 1 November, 100 darker ones on 3 November) and the scenes."""
    declare(project_dir)
    rng = np.random.default_rng(7)
    bright = [scene(rng, n) for n in range(200)]
    dark = [scene(rng, 200 + n, light=0.45) for n in range(100)]
    fill_capture(project_dir, project_dir / "cap", bright, start="2026-11-01T00:00:00+00:00", step_s=300)
    fill_capture(project_dir, project_dir / "cap", dark, start="2026-11-03T00:00:00+00:00", step_s=300)
    return project_dir, bright, dark


def digest_name(s):
    return hashlib.sha256(s.png).hexdigest()[:16] + ".png"


def test_labels_in_two_batches_switch_the_gates_from_agreement_to_accuracy(cli, world):
    root, bright, dark = world
    first = cli("capture", "label", "cap", "--labels", write_coco(root / "batch1.json", bright[:40]))
    assert first.exit_code == 0 and "40 images labelled (40 new, 0 replaced; 40 by request id)" in first.stdout

    early = cli("shadow", "--capture", "cap", "-m", "colours", "--new", "v2", "--max-map-drop", "0.02", "--no-progress")
    assert early.exit_code == 3
    assert "judged on agreement with the recorded answers: 40 of 300 requests have labels, fewer than --min-labeled 50" in early.stderr
    assert "--max-map-drop not applied until 50 requests have labels" in early.stderr
    assert "--min-recall" in early.stderr.splitlines()[-1]  # agreement caught it: v2 misses the old answers' blue boxes

    batch2 = write_coco(root / "batch2.json", bright[40:80] + dark[:20], name=digest_name)
    data = json.loads(batch2.read_text())
    data["images"].append({"id": 999, "file_name": "never-captured.png", "width": 320, "height": 240})
    batch2.write_text(json.dumps(data))
    second = cli("capture", "label", "cap", "--labels", batch2)
    assert second.exit_code == 1  # one entry found no captured image: named and counted, the rest attached
    assert "60 images labelled (60 new, 0 replaced; 60 by digest), 1 entries unmatched" in second.stdout
    assert "unmatched: never-captured.png" in second.stderr

    late = cli("shadow", "--capture", "cap", "-m", "colours", "--new", "v2", "--no-progress", "--format", "json")
    assert late.exit_code == 3
    assert "judged on accuracy against the labels of 100 of 300 requests (--min-labeled 50)" in late.stderr
    report = json.loads(late.stdout)
    assert set(report["verdict"]["deciding"]) >= {"max_recall_drop"} and report["settings"]["notes"]
    new = report["truth"]["new"]["per_label"]  # the per-label figures name the class that regressed, and only it
    assert new["blue"]["recall"] == 0.0 and new["red"]["recall"] == 1.0 and report["truth"]["old"]["per_label"]["blue"]["recall"] == 1.0
    twin = cli("shadow", "--capture", "cap", "-m", "colours", "--new", "twin", "--no-progress")
    assert twin.exit_code == 0, twin.stderr
    canary = cli("canary", "--capture", "cap", "-m", "colours", "--new", "v2", "--steps", "50,100", "--dry-run", "--no-progress")
    assert canary.exit_code == 3 and "judged on accuracy against the labels of 100 of 300 requests" in canary.stderr


def test_eval_on_the_capture_scores_each_version_and_window_against_the_late_labels(cli, world):
    root, bright, dark = world
    cli("capture", "label", "cap", "--labels", write_coco(root / "b1.json", bright[:60]))
    cli("capture", "label", "cap", "--labels", write_coco(root / "b2.json", dark[:40], name=digest_name))
    result = cli("eval", "--capture", "cap", "-m", "colours", "--run", "v2", "--window", "1d", "--format", "json", "--no-progress")
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.stdout)
    assert (scores["labelled"], scores["requests"]) == (100, 300)
    rows = {(r["version"], r["answers"], r["window"][:10]): r for r in scores["rows"]}
    assert set(rows) == {("colours@v1", "recorded", "2026-11-01"), ("colours@v1", "recorded", "2026-11-03"),
                         ("colours@v2", "run here", "2026-11-01"), ("colours@v2", "run here", "2026-11-03")}
    for day in ("2026-11-01", "2026-11-03"):  # darker traffic: the same accuracy (the model did not change)
        v1, v2 = rows[("colours@v1", "recorded", day)], rows[("colours@v2", "run here", day)]
        assert v1["per_label"]["red"]["recall"] == v1["per_label"]["blue"]["recall"] == 1.0
        assert v2["per_label"]["red"]["recall"] == 1.0 and v2["per_label"]["blue"]["recall"] == 0.0  # one class regressed
    table = cli("eval", "--capture", "cap", "-m", "colours", "--no-progress")
    assert table.exit_code == 0 and "100 of 300 captured requests have labels" in table.stdout
    assert "REPORT ONLY" in table.stderr.splitlines()[-1]
    none = cli("eval", "--capture", "cap", "-m", "faces", "--no-progress")
    assert none.exit_code == 2 and "no captured request of faces in cap has labels yet (0 requests)" in none.stderr


def test_drift_tells_a_traffic_shift_from_a_model_change(cli, world):
    traffic = cli("drift", "--capture", "cap", "-m", "colours", "--no-progress", "--format", "json")
    assert traffic.exit_code == 3
    doc = json.loads(traffic.stdout)
    psi = {f["feature"]: f["psi"] for f in doc["features"]}
    assert psi["brightness"] > 0.25 and psi["megapixels"] < 0.1  # the inputs moved: darker, same size
    assert doc["verdict"]["deciding"] == ["confidence"] and doc["verdict"]["cause"].startswith("the traffic changed")
    assert psi["class"] < 0.1 and psi["boxes_per_image"] < 0.25  # the same objects are found

    model = cli("drift", "--capture", "cap", "-m", "colours", "--new", "v2", "--no-progress", "--format", "json")
    assert model.exit_code == 3
    doc = json.loads(model.stdout)
    assert "class" in doc["verdict"]["deciding"] and doc["verdict"]["cause"].startswith("the model changed")
    assert all(f["kind"] == "output" for f in doc["features"])  # the same images: no input drift to speak of

    same = cli("drift", "--capture", "cap", "-m", "colours", "--new", "twin", "--no-progress", "--html", "page", "--report", "drift.json")
    assert same.exit_code == 0 and same.stderr.splitlines()[-1].startswith("PASS")
    page = (world[0] / "page" / "index.html").read_text()
    assert page.count("<svg") == 5 and "<script" not in page and "PASS" in page  # a histogram per output feature, offline
    assert json.loads((world[0] / "drift.json").read_text())["verdict"]["status"] == "pass"
    windows = cli("drift", "--capture", "cap", "-m", "colours", "--reference", "..2026-11-02", "--current", "2026-11-01..2026-11-02",
                  "--no-progress")
    assert windows.exit_code == 0  # the bright day against itself
    bad = cli("drift", "--capture", "cap", "-m", "colours", "--reference", "yesterday", "--no-progress")
    assert bad.exit_code == 2 and "START..END" in bad.stderr


def test_what_to_label_next_goes_out_and_comes_back(cli, world, tmp_path):
    root, bright, dark = world
    scenes = {hashlib.sha256(s.png).hexdigest(): s for s in bright + dark}
    out = cli("capture", "export", "cap", "-m", "colours", "--new", "v2", "--most-disagreeing", "12", "--to", root / "review", "--no-progress")
    assert out.exit_code == 0, out.stderr
    files = sorted((root / "review" / "images").iterdir())
    assert len(files) == 12
    chosen = [scenes[f.stem] for f in files]
    assert all(any(label == "blue" for label, _ in s.boxes) for s in chosen)  # where the versions disagree: blue squares
    coco = json.loads((root / "review" / "annotations.json").read_text())
    versions = {a["attributes"]["version"] for a in coco["annotations"]}
    assert versions == {"colours@v1", "colours@v2"}  # both versions' boxes as pre-annotations
    control = cli("capture", "export", "cap", "-m", "colours", "--random", "12", "--seed", "3", "--to", root / "control", "--no-progress")
    picked = [scenes[f.stem] for f in (root / "control" / "images").iterdir()]
    assert control.exit_code == 0 and sum(any(l == "blue" for l, _ in s.boxes) for s in picked) < 12  # the control is not all blue

    # the reviewer's labels come back under the exported names (digests): the loop closes
    back = cli("capture", "label", "cap", "--labels", write_coco(tmp_path / "reviewed.json", chosen, name=lambda s: hashlib.sha256(s.png).hexdigest() + ".png"))
    assert back.exit_code == 0 and "12 images labelled (12 new" in back.stdout and "12 by digest" in back.stdout
    again = cli("capture", "export", "cap", "-m", "colours", "--new", "v2", "--most-disagreeing", "12", "--to", root / "review2", "--no-progress")
    assert not {f.stem for f in (root / "review2" / "images").iterdir()} & {f.stem for f in files}  # labelled ones are not offered again
    ls = cli("capture", "export", "cap", "-m", "colours", "--least-confident", "3", "--format", "label-studio", "--to", root / "ls", "--no-progress")
    tasks = json.loads((root / "ls" / "tasks.json").read_text())
    assert ls.exit_code == 0 and len(tasks) == 3 and tasks[0]["predictions"][0]["model_version"] == "colours@v1"
    assert (root / "ls" / "label_config.xml").read_text().count("<Label ") == 2
    busy = cli("capture", "export", "cap", "-m", "colours", "--random", "2", "--to", root / "ls")
    assert busy.exit_code == 2 and "not an empty folder" in busy.stderr
    neither = cli("capture", "export", "cap", "-m", "colours", "--to", root / "x")
    assert neither.exit_code == 2 and "one way" in neither.stderr
