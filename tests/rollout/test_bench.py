"""``mldeploy bench``: the choice on fixed figures (every constraint and objective picks what it must),
and real measurements of planted candidates whose order is known: shapes@blind is fast and finds
nothing, shapes@padded is as accurate as shapes@v1 and many times slower, shapes@hungry answers like
shapes@v1 and holds 300 MB more."""

import json

import pytest

from mldeploy.models.base import ModelSpec
from mldeploy.rollout.bench import Accuracy, Candidate, Constraints, Percentile, choose, percentile
from tests.helpers.planted import plant


def candidate(ref, p95_ms, rate, mb, f1=None, map_=None, threads=1, concurrency=1):
    name, version = ref.split("@")
    spec = ModelSpec(name, version, "darknet", {}, ("square",))
    p = Percentile(p95_ms / 1000, p95_ms / 1000 * 0.95, p95_ms / 1000 * 1.05)
    accuracy = Accuracy("labels", map=map_) if map_ is not None else Accuracy("shapes@v1", f1=f1)
    return Candidate(spec, threads, concurrency, 0.1, 0.01, {"p50": p, "p95": p, "p99": p}, rate, mb, 1.0, {}, accuracy)


@pytest.fixture
def pool():
    return [
        candidate("shapes@fast", 10, 100, 150, f1=0.50),  # fast, light, inaccurate
        candidate("shapes@slow", 90, 11, 160, f1=1.00),  # slow and accurate
        candidate("shapes@big", 20, 50, 480, f1=0.99),  # accurate, quick, heavy
        candidate("shapes@mid", 40, 30, 200, f1=0.97, threads=2),
    ]


@pytest.mark.parametrize("objective, limits, chosen", [
    ("latency", {}, "shapes@fast"),
    ("throughput", {}, "shapes@fast"),
    ("memory", {}, "shapes@fast"),
    ("accuracy", {}, "shapes@slow"),
    ("latency", {"min_f1": 0.95}, "shapes@big"),
    ("latency", {"min_f1": 0.95, "max_memory_mb": 300}, "shapes@mid"),
    ("accuracy", {"max_p95_ms": 50}, "shapes@big"),
    ("accuracy", {"max_p95_ms": 50, "max_memory_mb": 300}, "shapes@mid"),
    ("throughput", {"min_f1": 0.98, "min_images_per_s": 40}, "shapes@big"),
])
def test_each_constraint_and_objective_picks_what_it_must(pool, objective, limits, chosen):
    best = choose(pool, Constraints(**limits), objective)
    assert best is not None and best.spec.ref == chosen
    assert all((c.breaks is None) == all(_fits(c, limits)) for c in pool)


def _fits(c, limits):
    yield c.p("p95") <= limits.get("max_p95_ms", float("inf"))
    yield c.peak_mb <= limits.get("max_memory_mb", float("inf"))
    yield c.images_per_second >= limits.get("min_images_per_s", 0)
    yield c.accuracy.f1 >= limits.get("min_f1", 0)


def test_none_fits_and_each_says_the_first_limit_it_breaks(pool):
    assert choose(pool, Constraints(max_p95_ms=15, min_f1=0.9), "latency") is None
    breaks = {c.spec.ref: c.breaks for c in pool}
    assert breaks == {"shapes@fast": "F1 0.500 < 0.9", "shapes@slow": "p95 90 ms > 15 ms", "shapes@big": "p95 20 ms > 15 ms",
                      "shapes@mid": "p95 40 ms > 15 ms"}


@pytest.mark.parametrize("refs, limits, line", [
    (["shapes@fast", "shapes@slow"], {}, "PASS: shapes@fast threads=1 concurrency=1 (lowest p95 of 2 candidates; no limit was given)"),
    (["shapes@fast"], {}, "PASS: shapes@fast threads=1 concurrency=1 (the only candidate; no limit was given)"),
    (["shapes@fast", "shapes@slow", "shapes@big"], {"max_p95_ms": 50},
     "PASS: shapes@fast threads=1 concurrency=1 (lowest p95 of 2 candidates that meet every limit)"),
    (["shapes@fast", "shapes@slow"], {"max_p95_ms": 50}, "PASS: shapes@fast threads=1 concurrency=1 (the one candidate of 2 that meets every limit)"),
    (["shapes@fast", "shapes@slow"], {"max_p95_ms": 5}, "FAIL: no candidate fits (2 measured; closest: shapes@fast threads=1 concurrency=1: p95 10 ms > 5 ms)"),
])
def test_the_verdict_line_says_how_the_choice_was_made(pool, refs, limits, line):
    from mldeploy.report.bench import headline
    from mldeploy.rollout.bench import BenchResult

    candidates = [c for c in pool if c.spec.ref in refs]
    constraints = Constraints(**limits)
    result = BenchResult(candidates, choose(candidates, constraints, "latency"), "latency", constraints, {}, {})
    assert headline(result) == line


def test_min_map_against_labels():
    a = candidate("shapes@a", 10, 10, 100, map_=0.40)
    b = candidate("shapes@b", 30, 10, 100, map_=0.70)
    assert choose([a, b], Constraints(min_map=0.5), "latency") is b and a.breaks == "mAP 0.400 < 0.5"


def test_percentiles_carry_a_seeded_interval():
    times = [0.010] * 90 + [0.050] * 10
    p50, p95 = percentile(times, 50), percentile(times, 95)
    assert p50.value == pytest.approx(0.010) and p95.value == pytest.approx(0.050)
    assert p95.low <= p95.value <= p95.high and percentile(times, 95) == p95  # the same times, the same interval
    assert percentile([], 95) is None


@pytest.fixture
def planted(project_dir, flaky):
    plant(project_dir)
    return project_dir


@pytest.mark.slow
def test_a_real_bench_of_planted_candidates(cli, planted, tmp_path):
    """Real processes, real clocks: only orders the plants make certain (padded is 25x slower; hungry holds
    300 MB more) are asserted, never a duration."""
    result = cli("bench", "shapes", "-m", "shapes", "--versions", "v1,blind,padded,hungry", "--threads", "1", "--requests", "16", "--objective", "accuracy",
                 "--max-memory-mb", "250", "--report", tmp_path / "b.json", "--csv", tmp_path / "b.csv", "--no-progress")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "b.json").read_text())
    rows = {row["version"]: row for row in doc["candidates"]}
    assert set(rows) == {"shapes@v1", "shapes@blind", "shapes@padded", "shapes@hungry"}
    assert rows["shapes@blind"]["f1"] == 0 and rows["shapes@v1"]["f1"] == rows["shapes@padded"]["f1"] == rows["shapes@hungry"]["f1"] == 1.0
    assert rows["shapes@padded"]["p50_ms"] > 5 * rows["shapes@v1"]["p50_ms"]
    assert rows["shapes@hungry"]["peak_mb"] > rows["shapes@v1"]["peak_mb"] + 250  # each version measured in its own process
    assert rows["shapes@hungry"]["breaks"].startswith("peak memory ") and rows["shapes@hungry"]["breaks"].endswith(" MB > 250 MB")
    assert doc["verdict"]["chosen"] == "shapes@v1 threads=1 concurrency=1"  # accurate, light, faster than padded
    assert rows["shapes@v1"]["forward_ms"] is not None and rows["shapes@v1"]["decode_ms"] is not None  # stages of an OpenCV DNN model
    assert doc["machine"]["cores_used"] >= 1 and "opencv" in doc["machine"]["libraries"]
    assert (tmp_path / "b.csv").read_text().splitlines()[0].startswith("version,threads,concurrency,p50_ms,p95_ms")
    assert result.stderr.strip().splitlines()[-1].startswith("PASS: shapes@v1 threads=1 concurrency=1 (most accurate of ")


@pytest.mark.slow
def test_labels_threads_concurrency_cpus_and_none_fits(cli, planted, tmp_path):
    import cv2

    boxes = []
    for n in range(8):  # where tests/conftest.py drew each red square
        x, y = 20 + 30 * n, 200 - 20 * n
        boxes.append({"id": n + 1, "image_id": n + 1, "category_id": 1, "bbox": [x, y, 80, 80], "area": 6400, "iscrowd": 0})
    coco = {"images": [{"id": n + 1, "file_name": f"square{n}.png", "width": 320, "height": 320} for n in range(8)],
            "annotations": boxes, "categories": [{"id": 1, "name": "square"}]}
    (tmp_path / "labels.json").write_text(json.dumps(coco))
    assert cv2.imread(str(planted / "shapes" / "square0.png")).shape[:2] == (320, 320)
    result = cli("bench", "shapes", "-m", "shapes", "--versions", "v1,blind", "--threads", "1,2", "--concurrency", "1,3", "--cpus", "1",
                 "--requests", "12", "--labels", tmp_path / "labels.json", "--min-map", "0.3", "--max-p95-ms", "0.001", "--format", "json",
                 "--no-progress")
    assert result.exit_code == 3, result.output  # 1 microsecond at p95: nothing fits
    doc = json.loads(result.stdout)
    assert len(doc["candidates"]) == 2 * 2 * 2 and doc["machine"]["cores_used"] == 1 and not doc["passed"]
    for row in doc["candidates"]:
        assert row["breaks"].startswith("p95 ") and row["breaks"].endswith(" ms > 0.001 ms")
    eval_ = cli("eval", "shapes", "-m", "shapes@v1", "--labels", tmp_path / "labels.json", "--format", "json")
    v1 = next(row for row in doc["candidates"] if row["version"] == "shapes@v1")
    assert v1["map"] == pytest.approx(json.loads(eval_.stdout)["summary"]["map"], abs=1e-4)  # the same figure eval computes


def test_usage_errors(cli, planted, tmp_path):
    for args, message in ((["--threads", "0"], "--threads '0': each count from 1 to 256"),
                          (["--concurrency", "a"], "whole numbers separated by commas"),
                          (["--min-map", "0.5"], "--min-map judges against ground truth: add --labels FILE"),
                          (["--objective", "speed"], "--objective 'speed': choose latency, throughput, memory, accuracy"),
                          (["--cpus", "999"], "--cpus 999: this machine lets mldeploy use")):
        result = cli("bench", "shapes", "-m", "shapes", "--versions", "v1", *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)


@pytest.mark.slow
def test_the_html_page_works_offline_and_the_handoff_names_the_next_steps(cli, planted, tmp_path):
    result = cli("bench", "shapes", "-m", "shapes", "--versions", "blind,padded", "--reference", "padded", "--threads", "1", "--requests", "8", "--objective", "accuracy",
                 "--html", tmp_path / "page", "--no-progress")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "index.html").read_text()
    assert "<svg" in page and "<script" not in page  # the chart is in the page: nothing to fetch
    assert not any(f'{attr}="http' in page or f"{attr}='http" in page for attr in ("src", "href", "xlink:href")) and "url(http" not in page
    assert "PASS: shapes@padded threads=1 concurrency=1" in page
    said = result.stderr
    assert "next (serve): mldeploy serve -m shapes --threads 1" in said
    assert "next (shadow): mldeploy shadow shapes -m shapes --new shapes@padded" in said  # v1 is live: shadow it first
    live = cli("bench", "shapes", "-m", "shapes", "--versions", "v1", "--requests", "8", "--no-progress")
    assert "next (live): shapes@v1 is the live version already" in live.stderr and "next (shadow)" not in live.stderr


def test_by_default_a_version_runs_on_every_core_it_is_given(cli, planted):
    """Without --threads, the thread count serve would use: every core (of --cpus, when given)."""
    import os

    result = cli("bench", "shapes", "-m", "shapes", "--versions", "v1", "--requests", "5", "--format", "json", "--no-progress")
    assert [row["threads"] for row in json.loads(result.stdout)["candidates"]] == [len(os.sched_getaffinity(0))]
    pinned = cli("bench", "shapes", "-m", "shapes", "--versions", "v1", "--requests", "5", "--cpus", "1", "--format", "json", "--no-progress")
    assert [row["threads"] for row in json.loads(pinned.stdout)["candidates"]] == [1]


def test_a_large_parent_does_not_inflate_a_candidates_memory(cli, planted):
    """The measuring process is spawned by this one; Linux carries ``ru_maxrss`` across fork and exec, so
    a parent holding 500 MB must not show up as the candidate's peak (``VmHWM`` is its own)."""
    import numpy as np

    held = np.ones(500 * 1024 * 1024 // 8)  # noqa: F841 - touched pages: 500 MB resident here
    result = cli("bench", "shapes", "-m", "shapes", "--versions", "v1", "--threads", "1", "--requests", "5", "--format", "json", "--no-progress")
    assert [row["peak_mb"] < 400 for row in json.loads(result.stdout)["candidates"]] == [True]


def test_labels_that_cannot_be_read_fail_before_anything_is_measured(cli, planted, tmp_path):
    (tmp_path / "bad.json").write_text("{ not json")
    result = cli("bench", "shapes", "-m", "shapes", "--versions", "v1", "--labels", tmp_path / "bad.json")
    assert result.exit_code == 2 and "measuring" not in result.stderr, result.stderr
