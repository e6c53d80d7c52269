"""The live canary guard judges the same GATES as the offline rehearsal, on a window of canary requests."""

from mldeploy.server.canary_guard import CanaryGuard


def guard(bounds, min_requests=5):
    calls = []
    return CanaryGuard(bounds, min_requests, lambda model, version, reason: calls.append((model, version, reason))), calls


def test_error_rate_over_the_bound_rolls_back_once_enough_requests_came():
    g, calls = guard({"max_error_rate": 0.2})
    for seconds in (0.01, 0.01, 0.01, None):
        g.observe("faces", "v2", seconds)
    assert calls == []  # 4 requests: below min_requests, no verdict yet
    g.observe("faces", "v2", None)
    (model, version, reason), = calls
    assert (model, version) == ("faces", "v2") and "after 5 requests: error rate 40.0% > 20.0%" in reason


def test_p95_latency_uses_milliseconds_and_a_healthy_canary_is_left_alone():
    g, calls = guard({"max_p95_ms": 50})
    for _ in range(20):
        g.observe("faces", "v2", 0.02)
    assert calls == []
    for _ in range(5):
        g.observe("faces", "v2", 0.2)
    assert len(calls) == 1 and "p95 latency" in calls[0][2] and "> 50.0 ms" in calls[0][2]


def test_no_bounds_no_guard():
    g, calls = guard({})
    for _ in range(50):
        g.observe("faces", "v2", None)
    assert calls == []
