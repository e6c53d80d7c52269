import numpy as np
import pytest

from mldeploy.detections import Detections


def make(n=3, size=(100, 50)):
    xyxy = np.array([[0, 0, 10, 10], [20, 5, 40, 45], [50, 10, 100, 50]][:n], np.float32)
    return Detections(xyxy, [0.9, 0.5, 0.7][:n], [0, 1, 0][:n], ["a", "b", "a"][:n], size)


def test_valid_construction_and_counts():
    dets = make()
    assert len(dets) == 3
    assert dets.counts() == {"a": 2, "b": 1}
    assert dets.xyxy.dtype == np.float32 and dets.class_id.dtype == np.int32


def test_filtering_is_indexing():
    dets = make()
    kept = dets[dets.confidence > 0.6]
    assert list(kept.label) == ["a", "a"]
    assert dets.filter(min_confidence=0.6, labels=["b"]).counts() == {}
    assert dets.filter(labels=["b"]).counts() == {"b": 1}
    assert len(dets[1]) == 1


def test_arrays_are_read_only():
    with pytest.raises(ValueError):
        make().xyxy[0, 0] = 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(xyxy=np.zeros((2, 3))), r"xyxy must have shape \(n, 4\), got \(2, 3\)"),
        (dict(confidence=[0.5]), r"confidence must have shape \(3,\), got \(1,\)"),
        (dict(label=["a"]), r"label must have shape \(3,\)"),
        (dict(image_size=(0, 10)), "image_size must be positive"),
        (dict(xyxy=[[0, 0, 1, 1], [5, 5, 1, 1], [0, 0, 1, 1]]), "x2 >= x1"),
        (dict(xyxy=[[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 101, 1]]), "inside the 100x50 image"),
        (dict(xyxy=[[0, 0, np.nan, 1], [0, 0, 1, 1], [0, 0, 1, 1]]), "NaN"),
        (dict(confidence=[0.5, 1.5, 0.1]), r"within \[0, 1\]"),
    ],
)
def test_invalid_values_are_refused_with_the_reason(kwargs, message):
    fields = dict(xyxy=make().xyxy, confidence=[0.9, 0.5, 0.7], class_id=[0, 1, 0], label=["a", "b", "a"], image_size=(100, 50))
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Detections(**fields)


def test_from_boxes_clips_drops_degenerate_and_nan_and_sorts():
    dets = Detections.from_boxes(
        [[-5, -5, 20, 20], [90, 40, 150, 90], [10, 10, 10, 30], [np.nan, 0, 5, 5], [1, 1, 2, 2]],
        [0.4, 0.8, 0.9, 0.99, 1.2],
        [0, 1, 0, 0, 1],
        ["cat", "dog"],
        (100, 50),
    )
    assert dets.xyxy.tolist() == [[1, 1, 2, 2], [90, 40, 100, 50], [0, 0, 20, 20]]
    assert dets.confidence.tolist() == pytest.approx([1.0, 0.8, 0.4])
    assert list(dets.label) == ["dog", "dog", "cat"]


def test_equality_compares_content():
    assert make() == make()
    assert make() != make(2)
    assert Detections.empty((10, 10)) == Detections.empty((10, 10))
    assert Detections.empty((10, 10)) != Detections.empty((10, 11))
