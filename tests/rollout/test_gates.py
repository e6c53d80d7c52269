"""Gates, the default policy and the verdict, on summaries the tests build (latencies injected, never timed)."""

import numpy as np
import pytest

from mldeploy.compare import AgreementResult, LabelAgreement
from mldeploy.errors import ConfigError, UsageError
from mldeploy.rollout.gates import DEFAULT_POLICY, GATES, evaluate, resolve_bounds, resolve_rules, verdict
from mldeploy.rollout.latency import LatencyStats, paired_ratio
from mldeploy.rollout.shadow import ShadowSummary


def summary(matched=8, old=10, new=9, disagreeing=2, images=10, new_errors=0, old_p50=0.01, new_p50=0.02, iou_sum=None, drifted=0, pairs=None):
    agreement = AgreementResult(images, disagreeing, old, new, matched, old - matched, new - matched, 0,
                                matched * 0.9 if iou_sum is None else iou_sum, drifted,
                                per_label={"face": LabelAgreement(old, new, matched, old - matched, new - matched, 0)})
    if pairs is None:
        pairs = np.column_stack([np.full(images, old_p50), np.full(images, new_p50)]) if old_p50 else np.zeros((0, 2))
    return ShadowSummary("faces@v1", "faces@v2", 0.5, images, images - new_errors, 0, 0, new_errors, agreement,
                         latency(images, old_p50), latency(images, new_p50), np.asarray(pairs, float))


def latency(calls, p50):
    return LatencyStats(calls, p50, p50 * 2, p50) if p50 else LatencyStats(0, None, None, None)


def by_name(results):
    return {g.name: g for g in results}


def test_the_default_policy_protects_a_user_who_passes_no_flag():
    assert resolve_bounds({}) == DEFAULT_POLICY == {
        "min_recall": 0.95, "min_precision": 0.95, "max_drift": 0.10, "max_latency_ratio": 1.25, "max_p95_ratio": 1.5,
        "max_new_errors": 0.0, "min_images": 1.0}
    assert resolve_bounds({}, policy="none") == {}  # switched off only explicitly...
    assert resolve_bounds({"min_recall": 0.5}, {"policy": "none"}) == {"min_recall": 0.5}  # ...by flag or in [gates]
    rules = resolve_rules({}, {"inconclusive": "pass"})
    assert rules.on_inconclusive == "pass" and rules.policy == "default"
    with pytest.raises(UsageError, match="'strict': choose default or none"):
        resolve_bounds({}, policy="strict")


def test_flags_override_the_project_file_which_overrides_the_policy():
    bounds = resolve_bounds({"min_recall": 0.9, "max_new_errors": None}, {"min_recall": 0.5, "max_disagreement": 0.1, "max_new_errors": 3})
    assert bounds == {**DEFAULT_POLICY, "min_recall": 0.9, "max_disagreement": 0.1, "max_new_errors": 3.0}
    with pytest.raises(ConfigError, match="must be a number"):
        resolve_bounds({}, {"min_recall": "high"})


def test_impossible_bounds_are_usage_errors():
    with pytest.raises(UsageError, match="--min-recall 95: must be a share from 0 to 1"):
        resolve_bounds({"min_recall": 95})
    with pytest.raises(UsageError, match=r"\[gates\] max_disagreement 1.5"):
        resolve_bounds({}, {"max_disagreement": 1.5})
    with pytest.raises(UsageError, match="--max-latency-ratio -1: must not be negative"):
        resolve_bounds({"max_latency_ratio": -1})
    assert resolve_bounds({"max_count_change": 2.0})["max_count_change"] == 2.0  # a count may triple


def truth_scores():
    """Real evaluations of two versions against the same truth: the old one finds both boxes, the new one
    finds one and puts a second box somewhere else."""
    from mldeploy.detections import Detections
    from mldeploy.truth.evaluate import TruthScores, evaluate, score_image

    def dets(boxes, scores=None):
        return Detections(boxes, scores or [1.0] * len(boxes), [0] * len(boxes), ["face"] * len(boxes), (100, 100))

    truth, none = dets([[0, 0, 10, 10], [50, 50, 70, 70]]), dets([])
    old = score_image("x", truth, none, dets([[0, 0, 10, 10], [50, 50, 70, 70]], [0.9, 0.8]))
    new = score_image("x", truth, none, dets([[0, 0, 10, 10], [80, 80, 95, 95]], [0.9, 0.8]))
    return TruthScores(new=evaluate("new", [new], ["face"]), old=evaluate("old", [old], ["face"]))


def test_each_gate_passes_and_fails_on_the_right_side():
    import dataclasses

    t = truth_scores()
    assert t.recall_drop == 0.5 and 0 < t.new.map < t.old.map == 1.0
    s = dataclasses.replace(summary(drifted=2), truth=t)  # recall 0.8, precision 8/9, drift 2/8, disagreement 0.2, latency ratio 2, mean IoU 0.9
    figures = {"max_disagreement": 0.2, "min_precision": 8 / 9, "min_recall": 0.8, "min_f1": 2 * (8 / 9) * 0.8 / (8 / 9 + 0.8),
               "min_mean_iou": 0.9, "max_drift": 0.25, "max_count_change": 0.1, "max_latency_ratio": 2.0, "max_p95_ratio": 2.0,
               "max_p95_ms": 40.0, "max_error_rate": 0.0, "max_new_errors": 0, "min_images": 10,
               "min_map": t.new.map, "max_map_drop": t.map_drop, "max_recall_drop": t.recall_drop}
    assert set(figures) == set(GATES)
    for name, value in figures.items():
        at_bound = evaluate(s, {name: value})[0]
        assert at_bound.status == "pass", name
        nudge = (-1 if GATES[name].kind == "max" else 1) * max(abs(value) * 0.01, 0.01)
        beyond = evaluate(s, {name: value + nudge})[0]
        assert beyond.status == "fail", name
        assert GATES[name].flag in beyond.message and "must be" in beyond.message


def test_with_labels_the_default_policy_judges_against_the_truth():
    from mldeploy.errors import UsageError
    from mldeploy.rollout.gates import TRUTH_POLICY

    assert resolve_bounds({}, truth=True) == TRUTH_POLICY == {
        "max_latency_ratio": 1.25, "max_p95_ratio": 1.5, "max_new_errors": 0.0, "min_images": 1.0, "max_map_drop": 0.02, "max_recall_drop": 0.05}
    assert resolve_bounds({"min_recall": 0.9}, truth=True)["min_recall"] == 0.9  # an agreement gate still applies when asked for
    assert "max_map_drop" not in resolve_bounds({}, {"max_map_drop": 0.1})  # a [gates] truth bound waits for a run with labels
    with pytest.raises(UsageError, match="--min-map judges against ground truth: add --labels"):
        resolve_bounds({"min_map": 0.5})


def test_figures_with_nothing_to_measure():
    empty = summary(matched=0, old=0, new=0, disagreeing=0, iou_sum=0.0)
    assert evaluate(empty, {"min_mean_iou": 0.9})[0].passed  # nobody found anything: no drift to measure
    blind = summary(matched=0, old=10, new=0, disagreeing=10, iou_sum=0.0)
    result = evaluate(blind, {"min_mean_iou": 0.9})[0]
    assert not result.passed and result.value == 0.0  # found nothing the old version found: worst case
    nothing_compared = summary(images=0, matched=0, old=0, new=0, disagreeing=0, iou_sum=0.0, old_p50=None, new_p50=None)
    results = by_name(evaluate(nothing_compared, resolve_bounds({})))
    assert results["min_images"].failed
    assert results["max_latency_ratio"].status == "inconclusive"  # no pairs: no evidence either way


def test_messages_use_the_gates_units_and_enough_decimals_near_a_bound():
    s = summary()
    assert evaluate(s, {"max_p95_ms": 30})[0].message == "--max-p95-ms: 40.0 ms (must be <= 30.0 ms)"
    assert evaluate(s, {"max_disagreement": 0.1})[0].message == "--max-disagreement: 20.0% (must be <= 10.0%)"
    assert evaluate(s, {"max_latency_ratio": 1.5})[0].message.startswith("--max-latency-ratio: 2.00x (must be <= 1.50x); 90% interval")
    near = summary(old_p50=0.1, new_p50=0.1502)
    assert evaluate(near, {"max_latency_ratio": 1.5})[0].message.startswith("--max-latency-ratio: 1.502x (must be <= 1.50x)")
    recall = summary(matched=9499, old=10000, new=9499)
    assert "0.9499 (must be >= 0.950)" in evaluate(recall, {"min_recall": 0.95})[0].message


def pairs(rng, n, old_ms, ratio, noise=0.05, slow=None):
    """``n`` (old, new) seconds: new = old x ratio, each with multiplicative noise; ``slow`` = (share, factor) of images slower still."""
    old = rng.uniform(old_ms * 0.8, old_ms * 1.2, n) / 1000
    new = old * ratio
    if slow:
        share, factor = slow
        new[: int(n * share)] *= factor
    return np.column_stack([old * rng.normal(1, noise, n), new * rng.normal(1, noise, n)])


def latency_verdicts(p, bounds=None):
    s = summary(pairs=p, images=len(p))
    return {g.name: g.status for g in evaluate(s, bounds or {"max_latency_ratio": 1.25, "max_p95_ratio": 1.5})}


def test_latency_verdicts_need_evidence():
    rng = np.random.default_rng(1)
    for seed in range(20):  # twins, both ways round, many times: never a failure
        twin = pairs(np.random.default_rng(seed), 40, 30, 1.0)
        assert latency_verdicts(twin) == {"max_latency_ratio": "pass", "max_p95_ratio": "pass"}, seed
        assert latency_verdicts(twin[:, ::-1]) == {"max_latency_ratio": "pass", "max_p95_ratio": "pass"}, seed
    assert latency_verdicts(pairs(rng, 40, 30, 1.8)) == {"max_latency_ratio": "fail", "max_p95_ratio": "fail"}
    # slow only on the large images (1 in 8, 9x): the median does not move, the tail does
    assert latency_verdicts(pairs(rng, 56, 30, 1.0, slow=(0.125, 9))) == {"max_latency_ratio": "pass", "max_p95_ratio": "fail"}
    assert set(latency_verdicts(pairs(rng, 3, 30, 3.0)).values()) == {"inconclusive"}  # three images prove nothing
    straddling = latency_verdicts(pairs(rng, 8, 100, 1.25, noise=0.15))
    assert straddling["max_latency_ratio"] == "inconclusive"
    fast = pairs(rng, 40, 0.3, 2.0, noise=0.3)  # 0.3 ms vs 0.6 ms: a ratio of 2, but well under the 5 ms floor
    assert latency_verdicts(fast) == {"max_latency_ratio": "pass", "max_p95_ratio": "pass"}


def test_the_interval_is_the_same_every_time_it_is_computed():
    p = pairs(np.random.default_rng(7), 30, 20, 1.1, noise=0.1)
    first, again = paired_ratio(p, 50), paired_ratio(p, 50)
    assert first == again and first.low <= first.value <= first.high and first.pairs == 30


def test_the_verdict_names_what_decided_it():
    s = summary(matched=10, old=10, new=10, disagreeing=0, pairs=pairs(np.random.default_rng(3), 3, 30, 1.0), images=3)
    results = evaluate(s, {"min_recall": 0.9, "max_latency_ratio": 1.25})
    assert verdict(results, "fail").status == "inconclusive" and verdict(results, "fail").headline == "INCONCLUSIVE: --max-latency-ratio"
    assert verdict(results, "pass").status == "pass" and verdict(results, "pass").ok
    only_evidence = evaluate(s, {"max_new_errors": 0, "min_images": 1})
    assert verdict(only_evidence).status == "report only"  # errors and image count judge no answer: never a PASS
    assert verdict(only_evidence).headline == "REPORT ONLY: no quality gate ran (gates: --max-new-errors, --min-images)"
    failing = evaluate(summary(), {"min_recall": 0.9, "max_disagreement": 0.1})
    assert verdict(failing).headline == "FAIL: --max-disagreement, --min-recall" and not verdict(failing).ok


def test_exit_code_comes_from_the_result_alone():
    from types import SimpleNamespace

    from mldeploy.rollout.gates import GATES, GateResult, exit_code, verdict

    failing = verdict([GateResult(GATES["min_recall"], 0.95, 0.5, "fail")])
    passing = verdict([GateResult(GATES["min_recall"], 0.95, 1.0, "pass")])
    assert exit_code(SimpleNamespace(verdict=failing, input_errors=True)) == 3  # a failed gate wins over skipped inputs
    assert exit_code(SimpleNamespace(verdict=passing, input_errors=True)) == 1
    assert exit_code(SimpleNamespace(verdict=passing, input_errors=False)) == 0
    assert exit_code(SimpleNamespace(verdict=None, input_errors=False)) == 0  # detect: no gate
