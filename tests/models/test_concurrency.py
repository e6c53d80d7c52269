"""Concurrency must never change an answer: cv2.dnn nets shared between threads return wrong boxes
unless calls are serialised (measured: 200 of 200 calls from 8 threads differed)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from mldeploy.images import read_image
from mldeploy.models import load_detector
from mldeploy.pipeline import collect_inputs
from mldeploy.rollout.engines.local import detect_images


@pytest.mark.parametrize("ref", ["faces@v1", "cats@haar", "faces@v2"])
def test_eight_threads_give_exactly_the_sequential_answers(registry, samples, ref):
    detector = load_detector(registry.resolve(ref))
    images = [read_image(p) for p in sorted(samples.glob("*.jpg"))] * (8 if ref != "faces@v2" else 2)
    sequential = [detector.detect(image) for image in images]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(detector.detect, images))
    assert all(a == b for a, b in zip(sequential, parallel))
    assert sum(len(d) for d in sequential) > 0  # the comparison is not between empty answers


def test_pipeline_gives_the_answers_of_a_plain_loop(registry, samples):
    detector = load_detector(registry.resolve("faces@v1"))
    inputs, failures = collect_inputs([str(samples)])
    assert not failures
    piped = [result.detections for result in detect_images(inputs, detector)]
    plain = [detector.detect(read_image(item.path)) for item in inputs]
    assert piped == plain
