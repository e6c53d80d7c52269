"""What a CI log shows: the commands run as a CI script runs them, in a child process with output piped
(no terminal, no ``COLUMNS``), from a checkout at a long path. Every figure is in the log, the verdict is
one line that starts with its status, the reports name the same deciding gates (JUnit read by
junitparser, not by our own writer's idea of it), and the exit codes tell a failure from too little
evidence."""

import json
import shutil
import subprocess
import sys

import pytest
from junitparser import Failure, JUnitXml, Skipped

from tests.helpers import subprocess_env
from tests.helpers.planted import plant

pytestmark = pytest.mark.slow

#: A folder name of the kind CI runners give a checkout; the project sits two of them deep.
LONG = "a_rather_long_folder_name_that_a_ci_runner_gives_its_checkout_of_the_repository"
VERDICT_WORDS = ("PASS", "FAIL", "INCONCLUSIVE", "REPORT ONLY")


@pytest.fixture
def deep(project_dir, tmp_path, flaky):
    plant(project_dir)
    where = tmp_path / LONG / LONG / "project"
    shutil.copytree(project_dir, where)
    few = where / "few"
    few.mkdir()
    for n in range(3):
        shutil.copy(where / "shapes" / f"square{n}.png", few)
    return where


def run(cwd, *args, **env):
    environment = subprocess_env(**env)
    if "COLUMNS" not in env:
        environment.pop("COLUMNS", None)
    environment.pop("LINES", None)
    return subprocess.run([sys.executable, "-m", "mldeploy", *map(str, args)], cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


def verdict_line(stderr: str) -> str:
    """The one line that carries the verdict: exactly one, and it is the last."""
    lines = [line for line in stderr.splitlines() if line.startswith(VERDICT_WORDS)]
    assert len(lines) == 1, stderr
    assert stderr.rstrip().splitlines()[-1] == lines[0]
    return lines[0]


def junit_counts_add_up(path) -> dict[str, list[str]]:
    """Read with junitparser: each suite's counts are its cases', the root's are the suites' sums. Returns
    the names of failed and skipped cases."""
    xml = JUnitXml.fromfile(str(path))
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    failed, skipped = [], []
    for suite in xml:
        cases = list(suite)
        results = [type(r) for case in cases for r in case.result]
        counted = {"tests": len(cases), "failures": results.count(Failure), "skipped": results.count(Skipped),
                   "errors": sum(r.__name__ == "Error" for r in results)}
        assert {k: getattr(suite, k) for k in counted} == counted, suite.name
        for key in totals:
            totals[key] += counted[key]
        failed += [case.name for case in cases if any(isinstance(r, Failure) for r in case.result)]
        skipped += [case.name for case in cases if any(isinstance(r, Skipped) for r in case.result)]
    assert {k: getattr(xml, k) for k in totals} == totals
    return {"failed": failed, "skipped": skipped}


def flags(names) -> set[str]:
    return {"--" + n.replace("_", "-") for n in names}


def test_a_failing_shadow_in_a_ci_log(deep):
    result = run(deep, "shadow", "shapes", "-m", "shapes", "--new", "blind", "--report", "r.json", "--junit", "s.xml", "--html", "page")
    doc = json.loads((deep / "r.json").read_text())
    assert result.returncode == 3 and doc["verdict"]["status"] == "fail", result.stderr
    out = result.stdout
    assert "…" not in out and "…" not in result.stderr  # nothing cut to an ellipsis
    # every column of the per-label table, on one line, and the row with every figure
    header = next(line for line in out.splitlines() if "label" in line and "recall" in line)
    assert all(name in header for name in ("old", "new", "change", "match", "miss", "extra", "relab", "drift", "recall", "prec"))
    square = doc["summary"]["per_label"]["square"]
    row = next(line for line in out.splitlines() if line.startswith("│ square"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells == ["square", str(square["old"]), str(square["new"]), f"{square['count_change']:+d}" if square["count_change"] else "0",
                     str(square["matched"]), str(square["missing"]), str(square["extra"]), str(square["relabelled"]), str(square["drifted"]),
                     f"{square['recall']:.3f}", f"{square['precision']:.3f}"]
    # the verdict: one line, the JSON's headline first, then what was compared and the times
    line = verdict_line(result.stderr)
    assert line.startswith(doc["verdict"]["headline"] + " (shapes@v1 -> shapes@blind, 8 images compared, load ")
    assert ", run " in line and str(deep) not in line
    # JUnit: counts add up at every level, and its failures are the deciding gates, no more
    cases = junit_counts_add_up(deep / "s.xml")
    assert set(cases["failed"]) == flags(doc["verdict"]["deciding"])
    page = (deep / "page" / "index.html").read_text()
    assert doc["verdict"]["headline"] in page


def test_inconclusive_has_its_own_exit_code_and_a_pass_says_what_it_let_through(deep):
    unsure = run(deep, "shadow", "few", "-m", "shapes", "--new", "twin", "--junit", "u.xml")
    assert unsure.returncode == 6, unsure.stderr  # not 3: nothing is worse, there is too little to know
    line = verdict_line(unsure.stderr)
    assert line.startswith("INCONCLUSIVE: --max-latency-ratio, --max-p95-ratio (") and line.endswith("; more images, or --inconclusive pass)")
    assert set(junit_counts_add_up(deep / "u.xml")["failed"]) == {"--max-latency-ratio", "--max-p95-ratio"}

    let = run(deep, "shadow", "few", "-m", "shapes", "--new", "twin", "--inconclusive", "pass", "--junit", "p.xml", "--report", "p.json",
              "--html", "p")
    assert let.returncode == 0, let.stderr
    doc = json.loads((deep / "p.json").read_text())
    headline = "PASS (2 gates inconclusive, let through by --inconclusive pass: --max-latency-ratio, --max-p95-ratio): 5 of 7 gates passed"
    assert doc["verdict"]["headline"] == headline and verdict_line(let.stderr).startswith(headline + " (")
    assert doc["verdict"]["let_through"] == ["max_latency_ratio", "max_p95_ratio"]
    cases = junit_counts_add_up(deep / "p.xml")
    assert cases["failed"] == [] and set(cases["skipped"]) == {"--max-latency-ratio", "--max-p95-ratio"}
    skipped = [r.message for suite in JUnitXml.fromfile(str(deep / "p.xml")) for case in suite for r in case.result if isinstance(r, Skipped)]
    assert all("let through by --inconclusive pass" in m for m in skipped)
    assert "let through by --inconclusive pass" in (deep / "p" / "index.html").read_text()
    assert "INCONCLUSIVE, let through" in let.stdout


def test_a_canary_that_promotes_on_unjudged_latency_says_so_in_the_history(deep):
    result = run(deep, "canary", "few", "-m", "shapes", "--new", "twin", "--steps", "100", "--inconclusive", "pass")
    assert result.returncode == 0, result.stderr
    assert "step 100%: 3 canary requests, inconclusive (--max-latency-ratio, --max-p95-ratio)" in result.stderr
    history = run(deep, "history", "shapes", "--format", "json")
    reason = json.loads(history.stdout)["history"][-1]["reason"]
    assert reason.endswith("not judged: 2 gates inconclusive, let through by --inconclusive pass: --max-latency-ratio, --max-p95-ratio")
    table = run(deep, "history", "shapes")  # piped: the reason on one line, no flag split in two
    assert any(line.rstrip(" │").endswith("--max-latency-ratio, --max-p95-ratio") for line in table.stdout.splitlines()), table.stdout


def test_a_narrow_columns_setting_gets_one_line_a_row_never_a_cut(deep):
    wide = run(deep, "shadow", "shapes", "-m", "shapes", "--new", "blind", "--format", "json")
    square = json.loads(wide.stdout)["summary"]["per_label"]["square"]
    narrow = run(deep, "shadow", "shapes", "-m", "shapes", "--new", "blind", COLUMNS="60")
    assert narrow.returncode == 3 and "…" not in narrow.stdout
    row = next(line for line in narrow.stdout.splitlines() if line.strip().startswith("label square:"))
    assert f"recall {square['recall']:.3f}" in row and f"prec {square['precision']:.3f}" in row and f"drift {square['drifted']}" in row
    for line in narrow.stdout.splitlines():  # tables that fit 60 columns are drawn; the rest are rows
        if line.startswith(("│", "┃", "┏", "└", "┡", "├")):
            assert len(line) <= 60, line


def test_eval_junit_counts_and_verdict(deep):
    result = run(deep, "eval", "photos", "--labels", "photos/labels/faces.json", "--min-map", "0.99", "--junit", "e.xml")
    assert result.returncode == 3, result.stderr
    line = verdict_line(result.stderr)
    assert line.startswith("FAIL: --min-map (faces@v1: mAP@0.5:0.95 ")
    assert junit_counts_add_up(deep / "e.xml")["failed"] == ["--min-map"]
    plain = run(deep, "eval", "photos", "--labels", "photos/labels/faces.json")
    assert plain.returncode == 0 and verdict_line(plain.stderr).startswith("REPORT ONLY: no gate given (--min-map) (faces@v1: ")
    assert "loading faces@v1 (ssd-caffe) ..." in plain.stderr  # no terminal: a plain line, no spinner
