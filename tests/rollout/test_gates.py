import pytest

from mldeploy.compare import AgreementResult, LabelAgreement
from mldeploy.errors import ConfigError
from mldeploy.rollout.gates import GATES, evaluate, resolve_bounds
from mldeploy.rollout.shadow import LatencyStats, ShadowSummary


def summary(matched=8, old=10, new=9, disagreeing=2, images=10, new_errors=0, old_p50=0.01, new_p50=0.02, iou_sum=None):
    agreement = AgreementResult(images, disagreeing, old, new, matched, old - matched, new - matched, 0,
                                matched * 0.9 if iou_sum is None else iou_sum,
                                {"face": LabelAgreement(old, new, matched, old - matched, new - matched, 0)})
    return ShadowSummary("faces@v1", "faces@v2", 0.5, images, images - new_errors, 0, 0, new_errors, agreement,
                         latency(images, old_p50), latency(images, new_p50))


def latency(calls, p50):
    return LatencyStats(calls, p50, p50 * 2, p50) if p50 else LatencyStats(0, None, None, None)


def test_defaults_are_only_errors_and_images():
    assert resolve_bounds({}) == {"max_new_errors": 0.0, "min_images": 1.0}


def test_flags_override_the_project_file_which_overrides_defaults():
    bounds = resolve_bounds({"min_recall": 0.9, "max_new_errors": None}, {"min_recall": 0.5, "max_disagreement": 0.1, "max_new_errors": 3})
    assert bounds == {"min_recall": 0.9, "max_disagreement": 0.1, "max_new_errors": 3.0, "min_images": 1.0}
    with pytest.raises(ConfigError, match="must be a number"):
        resolve_bounds({}, {"min_recall": "high"})


def test_impossible_bounds_are_usage_errors():
    from mldeploy.errors import UsageError

    with pytest.raises(UsageError, match="--min-recall 95: must be a share from 0 to 1"):
        resolve_bounds({"min_recall": 95})
    with pytest.raises(UsageError, match=r"\[gates\] max_disagreement 1.5"):
        resolve_bounds({}, {"max_disagreement": 1.5})
    with pytest.raises(UsageError, match="--max-latency-ratio -1: must not be negative"):
        resolve_bounds({"max_latency_ratio": -1})
    assert resolve_bounds({"max_count_change": 2.0})["max_count_change"] == 2.0  # a count may triple


def test_each_gate_passes_and_fails_on_the_right_side():
    s = summary()  # recall 0.8, precision 8/9, disagreement 0.2, latency ratio 2, p95 new 40 ms, mean IoU 0.9
    figures = {"max_disagreement": 0.2, "min_precision": 8 / 9, "min_recall": 0.8, "min_f1": 2 * (8 / 9) * 0.8 / (8 / 9 + 0.8),
               "min_mean_iou": 0.9, "max_count_change": 0.1, "max_latency_ratio": 2.0, "max_p95_ms": 40.0, "max_error_rate": 0.0,
               "max_new_errors": 0, "min_images": 10}
    assert set(figures) == set(GATES)
    for name, value in figures.items():
        at_bound = evaluate(s, {name: value})[0]
        assert at_bound.passed, name
        nudge = (-1 if GATES[name].kind == "max" else 1) * max(abs(value) * 0.01, 0.01)
        beyond = evaluate(s, {name: value + nudge})[0]
        assert not beyond.passed, name
        assert GATES[name].flag in beyond.message and "must be" in beyond.message


def test_figures_with_nothing_to_measure():
    empty = summary(matched=0, old=0, new=0, disagreeing=0, iou_sum=0.0)
    assert evaluate(empty, {"min_mean_iou": 0.9})[0].passed  # nobody found anything: no drift to measure
    blind = summary(matched=0, old=10, new=0, disagreeing=10, iou_sum=0.0)
    result = evaluate(blind, {"min_mean_iou": 0.9})[0]
    assert not result.passed and result.value == 0.0  # found nothing the old version found: worst case
    nothing_compared = summary(images=0, matched=0, old=0, new=0, disagreeing=0, iou_sum=0.0, old_p50=None, new_p50=None)
    assert not evaluate(nothing_compared, resolve_bounds({}))[1].passed  # min_images


def test_messages_use_the_gates_units():
    s = summary()
    assert evaluate(s, {"max_p95_ms": 30})[0].message == "--max-p95-ms: 40.0 ms (must be <= 30.0 ms)"
    assert evaluate(s, {"max_disagreement": 0.1})[0].message == "--max-disagreement: 20.0% (must be <= 10.0%)"
    assert evaluate(s, {"max_latency_ratio": 1.5})[0].message == "--max-latency-ratio: 2.00x (must be <= 1.50x)"
