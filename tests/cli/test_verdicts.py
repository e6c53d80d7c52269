"""Verdicts you can trust: every planted regression fails the *defaults*; twins never do; reports agree
with the exit code. The regressions are built by the tests (tests/helpers/planted.py); no timed
assertion: latency verdicts are asserted, and the slow versions are many times slower, never marginal."""

import json
import xml.etree.ElementTree as ET

import pytest

from tests.helpers.planted import plant


@pytest.fixture
def planted(project_dir, flaky):
    plant(project_dir)
    return project_dir


def shadow_json(cli, *args):
    result = cli("shadow", *args, "--format", "json")
    return result, json.loads(result.stdout)


@pytest.mark.parametrize(
    "folder, new, deciding",
    [
        ("faces", "strict", {"min_recall"}),  # threshold up: misses faces
        ("faces", "loose", {"min_precision"}),  # threshold down: invents faces
        ("faces", "drift", {"max_drift"}),  # prototxt edit: the same faces, boxes of other sizes
        ("faces", "flaky", {"min_recall", "max_new_errors"}),  # raises on some images: their faces count as missed
        ("faces", "slow-large", {"max_p95_ratio"}),  # identical answers, 9x slower on the 2 images over 2 MP
        ("shapes", "padded", {"max_latency_ratio", "max_p95_ratio"}),  # identical answers, zero-weight layers
    ],
)
def test_each_planted_regression_fails_the_defaults(cli, planted, folder, new, deciding):
    result, doc = shadow_json(cli, folder, "-m", folder, "--new", new)
    assert not doc["passed"] and doc["verdict"]["status"] in ("fail", "inconclusive")
    assert result.exit_code == {"fail": 3, "inconclusive": 6}[doc["verdict"]["status"]], result.stderr
    assert deciding <= set(doc["verdict"]["deciding"]), doc["verdict"]
    assert doc["verdict"]["headline"].split(":")[0] in result.stderr


def test_what_each_regression_looks_like(cli, planted):
    _, slow = shadow_json(cli, "faces", "--new", "slow-large")
    gates = {g["gate"]: g for g in slow["gates"]}
    assert gates["max_latency_ratio"]["status"] == "pass"  # the median does not move...
    assert gates["max_p95_ratio"]["value"] > 3 and slow["summary"]["disagreement"] == 0  # ...the tail does; answers identical
    _, flaky = shadow_json(cli, "faces", "--new", "flaky")
    s = flaky["summary"]
    assert s["recall"] < 0.7 and s["answered_only"]["recall"] == 1.0  # errors count as misses; answered images agree
    _, drift = shadow_json(cli, "faces", "--new", "drift")
    drifted = [i for i in drift["images"] if i.get("comparison", {}).get("drifted")]
    assert drifted and drift["summary"]["boxes"]["drifted"] == sum(len(i["comparison"]["drifted"]) for i in drifted)
    assert all(d["iou"] < 0.8 for i in drifted for d in i["comparison"]["drifted"])
    _, padded = shadow_json(cli, "shapes", "-m", "shapes", "--new", "padded")
    assert padded["summary"]["disagreement"] == 0 and padded["summary"]["latency"]["p50_ratio"]["interval_90"][0] > 1.25


@pytest.mark.timing  # real wall-clock ratios: the alternating order's fairness, which fixed latencies cannot show
def test_twins_never_fail(cli, planted):
    for _ in range(3):
        for folder, pair in (("faces", ("v1", "twin")), ("shapes", ("v1", "twin"))):
            for old, new in (pair, pair[::-1]):  # both ways round
                result, doc = shadow_json(cli, folder, "-m", folder, "--old", old, "--new", new)
                assert result.exit_code == 0 and doc["verdict"]["status"] == "pass", (folder, old, new, doc["verdict"], doc["summary"]["latency"])


def test_a_run_without_a_quality_gate_never_says_pass(cli, planted):
    result = cli("shadow", "photos", "--new", "blind", "--gates", "none", "--max-new-errors", "0", "--min-images", "1")
    assert result.exit_code == 0
    assert "REPORT ONLY: no quality gate ran (gates: --max-new-errors, --min-images)" in result.stderr and "PASS" not in result.stderr


def test_too_few_images_are_inconclusive_and_fail_unless_asked(cli, planted, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for name in ("astronaut.jpg", "camera.jpg", "chelsea.jpg"):
        (few / name).write_bytes((planted / "photos" / name).read_bytes())
    result, doc = shadow_json(cli, str(few), "--new", "twin")
    assert result.exit_code == 6 and doc["verdict"]["status"] == "inconclusive"  # not 3: more images may settle it
    assert "gate inconclusive: --max-latency-ratio" in result.stderr and "3 images, fewer than needed" in result.stderr
    allowed = cli("shadow", str(few), "--new", "twin", "--inconclusive", "pass")
    assert allowed.exit_code == 0 and "INCONCLUSIVE, let through" in allowed.stdout  # the table still says which
    verdict = allowed.stderr.strip().splitlines()[-1]
    assert verdict.startswith("PASS (2 gates inconclusive, let through by --inconclusive pass: --max-latency-ratio, --max-p95-ratio): ")


def test_reports_agree_with_the_exit_code(cli, planted, tmp_path):
    passing = cli("shadow", "faces", "--new", "twin", "--junit", tmp_path / "pass.xml", "--html", tmp_path / "pass")
    assert passing.exit_code == 0
    root = ET.parse(tmp_path / "pass.xml").getroot()
    assert (root.get("failures"), root.get("errors")) == ("0", "0")  # a green job has no red test
    assert "PASS" in (tmp_path / "pass" / "index.html").read_text()
    failing = cli("shadow", "faces", "--new", "drift", "--junit", tmp_path / "fail.xml", "--html", tmp_path / "fail")
    assert failing.exit_code == 3
    root = ET.parse(tmp_path / "fail.xml").getroot()
    failed_cases = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert "--max-drift" in failed_cases and all(name.startswith("--") for name in failed_cases)
    page = (tmp_path / "fail" / "index.html").read_text()
    assert 'class="verdict fail"' in page and "FAIL: " in page and "--max-drift" in page.split("<h2>Summary")[0]
    assert page.count("<img ") >= 1 and "drifted" in page


def test_a_canary_keeps_ramping_through_inconclusive_steps_and_stops_on_a_failure(cli, planted):
    result = cli("canary", "shapes", "-m", "shapes", "--new", "padded", "--steps", "10,50,100", "--format", "json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    verdicts = [(s["canary_requests"], s["verdict"]) for s in doc["timeline"]]
    assert all(v == "inconclusive" for n, v in verdicts if 0 < n < 5)  # too few to judge: keep ramping
    assert "fail" in [v for _, v in verdicts] and doc["promoted"] is False
    assert "rolled back" in result.stderr
    good = cli("canary", "shapes", "-m", "shapes", "--new", "twin", "--steps", "10,50,100", "--dry-run")
    assert good.exit_code == 0 and "would promote shapes@twin" in good.stderr
