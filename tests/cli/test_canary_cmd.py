"""`mldeploy canary`: the timeline, automatic rollback, promotion, and what the history keeps."""

import json

from mldeploy.store import open_store


def history(project_dir):
    return [(c.from_version, c.to_version, c.action) for c in open_store(project_dir / ".mldeploy").history()]


def test_a_good_canary_is_promoted(cli, project_dir):
    result = cli("canary", "shapes", "-m", "shapes", "--old", "v1", "--new", "shifted", "--steps", "25,50,100", "--min-recall", "1")
    assert result.exit_code == 0, result.output
    assert "canary: shapes@v1 -> shapes@shifted" in result.stdout and "pass" in result.stdout
    assert "promoted shapes: v1 -> shifted" in result.stderr
    assert history(project_dir) == [("v1", "shifted", "canary-promote")]
    assert "canary passed every step" in open_store(project_dir / ".mldeploy").history()[0].reason


def test_a_failing_gate_rolls_back_and_says_why(cli, project_dir):
    cli("promote", "shapes", "shifted")  # the canary's version is live when the rollout starts...
    result = cli("canary", "shapes", "-m", "shapes", "--old", "v1", "--new", "blind", "--min-recall", "0.9", "--format", "json")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    verdicts = [step["verdict"] for step in doc["timeline"]]
    assert "fail" in verdicts and verdicts[verdicts.index("fail") + 1:] == ["not run"] * (len(verdicts) - verdicts.index("fail") - 1)
    assert doc["promoted"] is False
    assert history(project_dir) == [("v1", "shifted", "promote"), ("shifted", "v1", "canary-rollback")]  # ...v1 is live again
    reason = open_store(project_dir / ".mldeploy").history()[-1].reason
    assert reason.startswith("canary of shapes@blind failed at") and "--min-recall: 0.000 (must be >= 0.900)" in reason
    assert "gate failed: --min-recall" in result.stderr


def test_rollback_when_the_old_version_already_is_live(cli, project_dir):
    result = cli("canary", "photos", "--new", "slow", "--max-latency-ratio", "2")
    assert result.exit_code == 3
    assert "rolled back: faces@v1 stays live" in result.stderr
    assert history(project_dir) == [("v1", "v1", "canary-rollback")]
    assert cli("rollback", "faces").exit_code == 2  # a canary that never went live is nothing to roll back to


def test_dry_run_changes_nothing_and_reruns_agree(cli, project_dir):
    runs = [json.loads(cli("canary", "shapes", "-m", "shapes", "--new", "shifted", "--dry-run", "-f", "json").stdout) for _ in range(2)]
    assert [(s["canary_requests"], s["verdict"]) for s in runs[0]["timeline"]] == [(s["canary_requests"], s["verdict"]) for s in runs[1]["timeline"]]
    assert [i["image"] for i in runs[0]["images"]] == [i["image"] for i in runs[1]["images"]]
    assert not (project_dir / ".mldeploy").exists()
    salted = json.loads(cli("canary", "shapes", "-m", "shapes", "--new", "shifted", "--dry-run", "-f", "json", "--salt", "b").stdout)
    assert [i["image"] for i in salted["images"]] != [i["image"] for i in runs[0]["images"]]


def test_canary_refusals(cli, project_dir):
    cases = [
        (("photos", "--new", "faces-haar@default"), "different models"),
        (("photos", "--new", "v1"), "nothing to roll out"),
        (("photos", "--new", "v2", "--steps", "50,10"), "steps must increase"),
        (("photos", "--new", "v2", "--steps", "1"), "no step sent any image"),
    ]
    for args, message in cases:
        result = cli("canary", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr
    assert not (project_dir / ".mldeploy").exists()


def test_records_hold_a_row_for_each_request_the_canary_saw(cli, project_dir):
    from mldeploy.report.records import read_records

    result = cli("canary", "shapes", "-m", "shapes", "--old", "v1", "--new", "blind", "--steps", "25,50,100", "--min-recall", "0.9",
                 "--dry-run", "--records", "rows", "--format", "json")
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    failed_at = next(step for step in report["timeline"] if step["verdict"] == "fail")
    rows = read_records(project_dir / "rows")
    assert len(rows) == failed_at["canary_requests"] < 8  # the images the later steps would have sent were never run
    assert sorted(row["index"] for row in rows) == list(range(len(rows)))
    assert sorted(row["image"] for row in rows) == sorted(image["image"] for image in report["images"])
