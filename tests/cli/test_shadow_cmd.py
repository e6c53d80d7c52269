"""`mldeploy shadow` as a CI job calls it: tables, JSON, reports, and the exit codes gates give."""

import json
import xml.etree.ElementTree as ET

import pytest


def test_self_comparison_passes_strict_gates_and_the_default_policy(cli, project_dir):
    result = cli("shadow", "photos", "--old", "v1", "--new", "v1", "--max-disagreement", "0", "--min-recall", "1",
                 "--min-precision", "1", "--min-mean-iou", "0.999", "--max-count-change", "0")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "shadow: faces@v1 (old) vs faces@v1 (new)" in out and "0 (0.0%)" in out and "per label" in out
    assert "PASS: all 10 gates passed" in result.stderr  # the five named and the default policy's other five


@pytest.mark.parametrize(
    "args, gate",
    [
        (("--new", "blind", "--min-recall", "0.9"), "--min-recall: 0.000 (must be >= 0.900)"),
        (("--new", "slow", "--max-latency-ratio", "2"), "--max-latency-ratio"),
        # 60%: 3 of 5 images, counting the one where the Haar box drifted (IoU under 0.8) from the SSD's
        (("--new", "faces-haar@default", "--max-disagreement", "0.1"), "--max-disagreement: 60.0% (must be <= 10.0%)"),
    ],
)
def test_planted_regressions_exit_3_and_name_the_gate(cli, project_dir, args, gate):
    result = cli("shadow", "photos", "--gates", "none", *args)  # only the gate named: it alone decides
    assert result.exit_code == 3, result.output
    assert f"error: gate failed: {gate}" in result.stderr
    assert f"FAIL: {args[2]} (" in result.stderr


def test_shifted_boxes_fail_the_mean_iou_gate(cli, project_dir):
    result = cli("shadow", "shapes", "-m", "shapes", "--new", "shifted", "--min-recall", "1", "--min-mean-iou", "0.95")
    assert result.exit_code == 3 and "gate failed: --min-mean-iou: 0.888" in result.stderr


def test_gates_from_the_project_file_and_flags_over_them(cli, project_dir):
    with open(project_dir / "mldeploy.toml", "a") as fh:
        fh.write("\n[gates]\nmin_recall = 0.9\n")
    assert cli("shadow", "photos", "--new", "blind").exit_code == 3
    assert cli("shadow", "photos", "--new", "blind", "--min-recall", "0").exit_code == 0


def test_json_output_and_every_report(cli, project_dir, tmp_path):
    result = cli("shadow", "photos", "--new", "faces-haar@default", "--format", "json", "--report", tmp_path / "r.json",
                 "--junit", tmp_path / "j.xml", "--html", tmp_path / "html", "--gates", "none", "--min-recall", "0.9")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc == json.loads((tmp_path / "r.json").read_text()) and doc["unmatched_inputs"] == []
    assert doc["summary"]["old"] == "faces@v1" and doc["summary"]["recall"] == pytest.approx(1 / 3, abs=1e-3)
    assert ET.parse(tmp_path / "j.xml").getroot().get("failures") == "1"  # the gate: disagreeing images are properties, not failures
    disagreeing = doc["summary"]["disagreeing_images"]
    assert (tmp_path / "html" / "index.html").is_file() and len(list((tmp_path / "html" / "images").iterdir())) == disagreeing == 3


def test_errors_of_the_new_version_are_shown_and_fail_by_default(cli, project_dir, flaky):
    result = cli("shadow", "photos", "--new", "flaky")
    assert result.exit_code == 3
    assert result.stderr.count("planted fault") == 2 and "gate failed: --max-new-errors: 2" in result.stderr
    allowed = cli("shadow", "photos", "--new", "flaky", "--gates", "none", "--max-new-errors", "2")
    assert allowed.exit_code == 0 and "REPORT ONLY: no quality gate ran (gates: --max-new-errors)" in allowed.stderr


def test_ugly_inputs_are_counted_and_give_exit_1(cli, project_dir):
    bad = project_dir / "photos"
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("a text file named like a photo")
    (bad / "cut.png").write_bytes((project_dir / "shapes" / "square0.png").read_bytes()[:200])
    (bad / "huge.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * (8 << 20))
    # About inputs, not latency: five images cannot prove a p95 either way under load, so say what that means here.
    result = cli("shadow", "photos", "missing-folder", "--new", "v1", "--format", "json", "--inconclusive", "pass")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["summary"]["unreadable"] == 4 and doc["summary"]["compared"] == 5
    assert doc["unmatched_inputs"][0]["input"] == "missing-folder"
    assert "PASS" in result.stderr and result.stderr.count("error:") == 5
    # A failing gate outranks unreadable inputs: the CI job must learn the version is bad.
    assert cli("shadow", "photos", "--new", "blind", "--min-recall", "0.5").exit_code == 3


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("photos", "--new", "v9"), 2, "no version 'v9'"),
        (("photos", "--new", "v2", "--classes", "dog"), 2, "has class 'dog'"),
        (("nowhere", "--new", "v2"), 2, "no images to replay"),
        (("photos", "--new", "v2", "--report", "photos/camera.jpg"), 2, "over input image"),
        (("photos", "--new", "objects@yolov4"), 4, "missing yolov4.cfg"),
        (("photos", "--new", "v2", "--iou", "0"), 2, None),
    ],
)
def test_usage_errors(cli, project_dir, yolo_dir, args, code, message):
    result = cli("shadow", *args)
    assert result.exit_code == code, result.output
    if message:  # one line (after any "loading NAME@VERSION ..." of a version that did load)
        said = [line for line in result.stderr.strip().splitlines() if not line.startswith("loading ")]
        assert message in result.stderr and len(said) == 1
    assert (project_dir / "photos" / "camera.jpg").stat().st_size > 1000


@pytest.mark.parametrize("command", ["shadow", "canary"])
def test_help_lists_every_option_with_its_help(cli, command):
    text = " ".join(cli(command, "--help").stdout.replace("│", " ").split())
    for expected in ("Least IoU", "Where live versions", "Compare only these", "Lower bound on the share", "--max-p95-ms", "Write JUnit XML"):
        assert expected in text, expected
    assert "--no-parallel" not in text


def test_exit_codes_reach_a_shell_through_the_real_entry_point(project_dir, tmp_path):
    """What a CI script sees: `mldeploy shadow` in its own process, stdout and exit status."""
    import subprocess
    import sys

    from tests.helpers import subprocess_env

    env = subprocess_env()

    def run(*args):
        return subprocess.run([sys.executable, "-m", "mldeploy", "shadow", "photos", *args], cwd=project_dir, env=env,
                              capture_output=True, text=True, timeout=300)

    failing = run("--new", "blind", "--min-recall", "0.9", "--junit", str(tmp_path / "j.xml"))
    assert failing.returncode == 3 and "gate failed: --min-recall" in failing.stderr
    assert (tmp_path / "j.xml").is_file()
    passing = run("--new", "v1", "--format", "json", "--max-disagreement", "0")
    assert passing.returncode == 0 and json.loads(passing.stdout)["passed"] is True


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_records_hold_every_image_row_as_it_finished(cli, project_dir, fmt):
    import os

    from mldeploy.report.records import read_records

    (project_dir / "photos" / "notes.jpg").write_text("not an image")
    old_umask = os.umask(0o022)
    try:
        result = cli("shadow", "photos", "--new", "faces-haar@default", "--gates", "none", "--records", "rows", "--records-format", fmt,
                     "--report", "report.json")
    finally:
        os.umask(old_umask)
    assert result.exit_code == 1, result.output  # notes.jpg cannot be read: counted, and a row of its own
    written = project_dir / "rows" / f"records.{fmt}"
    assert f"wrote rows/records.{fmt} (6 rows)" in result.stderr
    assert written.stat().st_mode & 0o777 == 0o644 and not (project_dir / "rows" / f"records.{fmt}.partial").exists()
    report = json.loads((project_dir / "report.json").read_text())
    assert report["images_listed"] == {"listed": 6, "of": 6, "complete": True, "which": "every image", "records": "rows"}
    rows = sorted(read_records(project_dir / "rows"), key=lambda row: row["index"])
    assert [row["index"] for row in rows] == list(range(6))
    assert [row["image"] for row in rows] == [image["image"] for image in report["images"]]
    notes = next(row for row in rows if row["image"].endswith("notes.jpg"))
    assert "not an image mldeploy reads" in notes["error"]
    if fmt == "jsonl":  # the JSON report's entry, and its number
        assert [{k: v for k, v in row.items() if k != "index"} for row in rows] == report["images"]
    else:  # flat columns, the boxes as JSON text
        answered = [row for row in rows if row["error"] is None]
        assert [json.loads(row["old_detections"]) for row in answered] == [image["old"]["detections"] for image in report["images"] if "old" in image]
        assert sum(row["agrees"] is False for row in answered) == report["summary"]["disagreeing_images"]


def test_records_never_overwrite_other_files_and_replace_an_earlier_run(cli, project_dir):
    mine = project_dir / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = cli("shadow", "photos", "--new", "v1", "--records", "mine")
    assert refused.exit_code == 2 and "--records mine is a folder with other files in it" in refused.stderr
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1
    assert cli("shadow", "photos", "--new", "v1", "--records", "rows", "--records-format", "xml").exit_code == 2
    for _ in range(2):  # the second run replaces the first one's rows
        assert cli("shadow", "photos", "--new", "v1", "--records", "rows").exit_code == 0
    assert sorted(p.name for p in (project_dir / "rows").iterdir()) == [".mldeploy-report", "records.jsonl"]
    assert len((project_dir / "rows" / "records.jsonl").read_text().splitlines()) == 5


def test_a_long_replay_lists_its_errors_and_most_disagreeing_and_every_row_goes_to_records(cli, project_dir, monkeypatch):
    """Past the records a run keeps (lowered here to 4), the reports list the errors and the most
    disagreeing images and say so; the summary's figures still count every image."""
    from mldeploy.report.records import read_records
    from mldeploy.rollout import latency, shadow

    monkeypatch.setattr(shadow, "KEEP_ALL", 4)
    monkeypatch.setattr(shadow, "KEEP_TOP", 1)
    monkeypatch.setattr(latency, "SAMPLE_SIZE", 6)
    (project_dir / "photos" / "notes.jpg").write_text("not an image")
    args = ("shadow", "photos", "shapes", "--new", "faces-haar@default", "--gates", "none", "--min-recall", "0.99")
    result = cli(*args, "--records", "rows", "--report", "report.json", "--junit", "junit.xml", "--html", "page")
    assert result.exit_code == 3, result.output
    report = json.loads((project_dir / "report.json").read_text())
    s = report["summary"]
    assert s["images"] == 14 and s["unreadable"] == 1 and s["compared"] == 13 and s["disagreeing_images"] >= 2
    listed = report["images_listed"]
    assert listed["listed"] == len(report["images"]) == 2 and listed["of"] == 14 and not listed["complete"]
    assert {i["image"] for i in report["images"]} >= {"photos/notes.jpg"}
    rows = read_records(project_dir / "rows")
    assert sorted(row["index"] for row in rows) == list(range(14))
    assert sum(row.get("comparison", {}).get("agrees") is False for row in rows) == s["disagreeing_images"]
    suites = ET.parse(project_dir / "junit.xml").getroot()
    assert "2 of 14: images with an error and the most disagreeing" in ET.tostring(suites, encoding="unicode")
    page = (project_dir / "page" / "index.html").read_text()
    assert f"Disagreeing images ({s['disagreeing_images']})" in page and "<code>rows</code>" in page
    assert s["latency"]["sampled"] and s["latency"]["paired_images"] == 6 and s["latency"]["new"]["calls"] == 13
    tables = cli(*args)
    assert "latency sample" in tables.stdout and "6 of 13 images" in " ".join(tables.stdout.split())
