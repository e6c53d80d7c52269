"""The population stability index and its verdicts (mldeploy.rollout.drift), on figures known by hand."""

import math

import numpy as np
import pytest

from mldeploy.detections import Detections
from mldeploy.errors import UsageError
from mldeploy.rollout.drift import MIN_VALUES, Sample, compare, compare_feature, parse_window, psi, versions_on_images


def test_psi_is_zero_for_the_same_shares_and_matches_the_formula():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - 1e-4) * math.log(1 / 1e-4))  # shares floored: finite


def test_numeric_features_bin_at_the_reference_deciles_and_categories_by_value():
    rng = np.random.default_rng(0)
    same = compare_feature("confidence", list(rng.uniform(0, 1, 5000)), list(rng.uniform(0, 1, 5000)))
    assert same.psi < 0.01 and len(same.bins) == 10 and same.band == "stable"
    shifted = compare_feature("confidence", list(rng.uniform(0, 1, 5000)), list(rng.uniform(0.3, 1, 5000)))
    assert shifted.psi > 0.25 and shifted.band == "major"
    new_class = compare_feature("class", ["a"] * 50 + ["b"] * 50, ["a"] * 50 + ["b"] * 40 + ["c"] * 10)
    assert new_class.bins == ("a", "b", "c") and new_class.current == (0.5, 0.4, 0.1)
    by_hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)  # a class never seen before weighs heavily
    assert new_class.psi == pytest.approx(by_hand) and new_class.band == "major"


def test_too_few_values_is_inconclusive_not_a_pass():
    small = compare_feature("box_area", [0.1] * (MIN_VALUES - 1), [0.9] * 100)
    assert small.psi is None and small.band == "too few values"
    empty = compare(Sample("a"), Sample("b"), mode="windows")
    assert empty.status == "inconclusive" and empty.headline().startswith("INCONCLUSIVE")


def _answers(labels_per_image):
    return [Detections([[0, 0, 10, 10]] * len(labels), [0.9] * len(labels), [0] * len(labels), labels, (100, 100)) for labels in labels_per_image]


def test_two_versions_on_the_same_images_blame_the_model_and_skip_failed_images():
    old = _answers([["red", "blue"]] * 60)
    new = _answers([["red"]] * 60)
    report = versions_on_images(zip(old + [old[0]], new + [None]), "m@v1", "m@v2")
    assert report.reference.images == report.current.images == 60  # the failed image is left out of both sides
    assert report.status == "fail" and {f.feature for f in report.failed} == {"boxes_per_image", "class"}
    assert report.cause().startswith("the model changed: on the same images")
    assert not any(f.kind == "input" for f in report.features)


def test_windows_blame_the_traffic_when_the_inputs_moved_too():
    a, b = Sample("before"), Sample("after")
    for d in _answers([["red"]] * 60):
        a.add_answer(d)
        a.add_input(100, 100, 130.0 + len(a.values["brightness"]) % 7)
    for d in _answers([["red"]] * 60):
        d = Detections(d.xyxy, [0.4], d.class_id, d.label, d.image_size)
        b.add_answer(d)
        b.add_input(100, 100, 60.0 + len(b.values["brightness"]) % 7)
    report = compare(a, b, mode="windows")
    assert report.status == "fail" and report.cause().startswith("the traffic changed")
    assert [f.feature for f in report.input_shift] == ["brightness"]
    with pytest.raises(UsageError):
        compare(a, b, mode="windows", max_psi=0)


def test_windows_are_parsed_with_open_ends():
    assert parse_window("2026-11-01..", "--reference") == ("2026-11-01T00:00:00.000000+00:00", None)
    assert parse_window("..2026-11-02T12:00", "--current")[1] == "2026-11-02T12:00:00.000000+00:00"
    with pytest.raises(UsageError, match="START..END"):
        parse_window("2026-11-01", "--reference")
    with pytest.raises(UsageError, match="not a date"):
        parse_window("monday..", "--reference")
