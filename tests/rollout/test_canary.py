import pytest

from mldeploy.errors import UsageError
from mldeploy.models import load_detector
from mldeploy.pipeline import collect_inputs
from mldeploy.project import Project
from mldeploy.rollout.canary import Ramp, bucket, parse_steps, routing_key, run_canary
from mldeploy.rollout.gates import resolve_bounds
from mldeploy.rollout.pairs import Pair
from mldeploy.rollout.sides import as_side
from tests.helpers.fixed import FixedLatency


def test_parse_steps():
    assert parse_steps("5,25,50,100") == (5, 25, 50, 100)
    assert parse_steps(" 10%, 100 ") == (10, 100)
    for bad, message in (("", "empty"), ("5,x", "percentages"), ("0,100", "above 0"), ("50,25", "increase"), ("5,150", "at most 100")):
        with pytest.raises(UsageError, match=message):
            parse_steps(bad)


def test_routing_is_sticky_stable_and_independent_of_how_the_folder_was_named(project_dir):
    a, _ = collect_inputs(["shapes"])
    b, _ = collect_inputs([str(project_dir / "shapes") + "/"])
    assert [routing_key(i) for i in a] == [routing_key(i) for i in b] == [f"square{n}.png" for n in range(8)]
    assert bucket("square1.png") == bucket("square1.png") != bucket("square1.png", salt="x")
    assert 0 <= bucket("anything") < 1
    # Shares only grow: whoever is on the canary at 25% is still on it at 50%.
    keys = [f"img{n}.jpg" for n in range(1000)]
    at = {share: {k for k in keys if bucket(k) < share / 100} for share in (5, 25, 50)}
    assert at[5] <= at[25] <= at[50]
    assert 20 < len(at[5]) < 80 and 400 < len(at[50]) < 600  # and the shares are about right


def canary(refs, steps, policy="none", latency=None, **bounds):
    """A canary judged by the bounds named (``policy="default"`` adds the default policy's); with
    ``latency``, both versions are timed that many seconds on every image (no wall clock)."""
    registry = Project().registry()
    old, new = (load_detector(registry.resolve(r)) for r in refs)
    if latency is not None:
        old, new = FixedLatency(old, latency), FixedLatency(new, latency)
    images, _ = collect_inputs(["shapes"])
    return run_canary(images, Pair(as_side(old), as_side(new)), Ramp(steps, resolve_bounds(bounds, policy=policy)))


def test_a_good_version_passes_every_step(project_dir):
    run = canary(("shapes@v1", "shapes@v1"), (25, 50, 100), max_disagreement=0, min_recall=1)
    requests = [s.canary_requests for s in run.steps]
    assert run.passed and [s.verdict for s in run.steps] == [("pass" if n else "no traffic") for n in requests]
    assert requests == sorted(requests) and requests[-1] == 8
    assert requests == [sum(bucket(f"square{n}.png") < share / 100 for n in range(8)) for share in (25, 50, 100)]


def test_a_bad_version_stops_at_the_first_step_with_traffic(project_dir):
    run = canary(("shapes@v1", "shapes@blind"), (25, 50, 100), min_recall=0.9)
    verdicts = [s.verdict for s in run.steps]
    first = next(i for i, s in enumerate(run.steps) if s.canary_requests)
    assert verdicts[first] == "fail" and set(verdicts[first + 1:]) <= {"not run"}
    assert not run.passed and run.failed_step is run.steps[first]
    assert len(run.records) == run.steps[first].canary_requests < 8  # the rest never reached the canary
    assert "failed at" in run.failure_reason() and "--min-recall" in run.failure_reason()


def test_reruns_route_the_same_way(project_dir):
    one = canary(("shapes@v1", "shapes@shifted"), (5, 25, 50, 100), min_mean_iou=0.5)
    two = canary(("shapes@v1", "shapes@shifted"), (5, 25, 50, 100), min_mean_iou=0.5)
    assert [s.canary_requests for s in one.steps] == [s.canary_requests for s in two.steps]
    assert [r.source for r in one.records] == [r.source for r in two.records]


def test_with_the_default_policy_small_steps_are_inconclusive_and_the_rollout_keeps_ramping(project_dir):
    run = canary(("shapes@v1", "shapes@v1"), (25, 50, 100), policy="default", latency=0.010)
    by_step = {s.share: (s.canary_requests, s.verdict) for s in run.steps}
    for share, (requests, step_verdict) in by_step.items():
        if 0 < requests < 5:  # too few pairs to judge latency: not a failure, not a pass
            assert step_verdict == "inconclusive", by_step
    assert by_step[100] == (8, "pass") and run.passed  # the last step has the evidence
    assert run.outcome.status == "pass"


def test_latency_gates_judge_paired_ratios_without_a_wall_clock(project_dir):
    """Fixed latencies: the same speed passes, twice as slow fails, and a few images are inconclusive."""
    same = canary(("shapes@v1", "shapes@v1"), (100,), policy="none", latency=0.010, max_latency_ratio=1.25, max_p95_ratio=1.5,
                  max_disagreement=0)
    assert same.outcome.status == "pass"
    registry = Project().registry()
    old, new = (load_detector(registry.resolve("shapes@v1")) for _ in range(2))
    images, _ = collect_inputs(["shapes"])
    bounds = resolve_bounds({"max_latency_ratio": 1.25, "max_disagreement": 0}, policy="none")
    slow = run_canary(images, Pair(FixedLatency(old, 0.010), FixedLatency(new, 0.020)), Ramp((100,), bounds))
    assert slow.outcome.status == "fail" and slow.last_step.summary.latency_ratio == pytest.approx(2.0)
    few = run_canary(images[:3], Pair(FixedLatency(old, 0.010), FixedLatency(new, 0.020)), Ramp((100,), bounds))
    assert few.outcome.status == "inconclusive"
