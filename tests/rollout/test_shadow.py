"""The shadow engine on real models: answers, matching, and planted regressions."""

import numpy as np
import pytest

from mldeploy.errors import InvalidImageError
from mldeploy.images import read_image
from mldeploy.models import load_detector
from mldeploy.pipeline import collect_inputs
from mldeploy.rollout.engines.local import detect_images
from mldeploy.project import Project
from mldeploy.rollout.gates import evaluate, resolve_bounds
from mldeploy.rollout.engines.local import replay
from mldeploy.rollout.shadow import most_disagreeing, run_shadow
from tests.helpers.coco import coco_matches


def versions(*refs):
    registry = Project().registry()
    return [load_detector(registry.resolve(ref)) for ref in refs]


def gates_failed(run, policy="none", **flags):
    """The gates that fail: those named (``policy="default"`` adds the default policy's)."""
    return [g.name for g in evaluate(run.summary, resolve_bounds(flags, policy=policy)) if g.failed]


@pytest.mark.parametrize("workers", [1, 2])
def test_running_two_versions_side_by_side_changes_no_answer(project_dir, workers):
    old, new = versions("faces@v1", "faces-haar@default")
    images, _ = collect_inputs(["photos"])
    run = run_shadow(images, old, new, workers=workers)
    alone_old = [r.detections for r in detect_images(images, old)]
    alone_new = [r.detections for r in detect_images(images, new)]
    for record, a, b in zip(run.records, alone_old, alone_new):
        assert np.array_equal(record.old.detections.xyxy, a.xyxy) and np.array_equal(record.new.detections.xyxy, b.xyxy)
        assert record.old.seconds > 0 and record.new.seconds > 0
    assert [r.source for r in run.records] == [i.display for i in images]


def test_a_version_compared_with_itself_passes_with_zero_disagreement(project_dir):
    (old,) = versions("faces@v1")
    images, _ = collect_inputs(["photos"])
    run = run_shadow(images, old, old)
    a = run.summary.agreement
    assert (a.disagreement, a.precision, a.recall, a.mean_iou, a.count_change_by_label) == (0.0, 1.0, 1.0, 1.0, {})
    assert a.old_boxes == 3 and run.summary.compared == 5
    strict = {"max_disagreement": 0, "min_precision": 1, "min_recall": 1, "min_mean_iou": 0.999, "max_count_change": 0}
    assert gates_failed(run, **strict) == []


def _rescaled(detector, image, factor, conf):
    """``detector`` run on ``image`` resized by ``factor``, its boxes mapped back: a second real answer
    close to the first, with IoUs on both sides of the threshold."""
    import cv2

    from mldeploy.detections import Detections

    h, w = image.shape[:2]
    small = cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    d = detector.detect(small, conf=conf)
    xyxy = np.minimum(d.xyxy / factor, [w, h, w, h]).astype(np.float32)
    return Detections(xyxy, d.confidence, d.class_id, d.label, (w, h))


@pytest.mark.parametrize("new_version", ["faces@v1 at 85% size", "faces-haar@default"])
def test_matching_on_real_detections_agrees_with_pycocotools(project_dir, capsys, new_version):
    """The old version's boxes as ground truth, the new one's as detections, at a low threshold so
    there are many boxes to match (photos, mirrored and shrunk copies)."""
    from mldeploy.compare import AgreementMetric

    old, haar = versions("faces@v1", "faces-haar@default")
    pictures = []
    for path in sorted((project_dir / "photos").glob("*.jpg")):
        image = read_image(path)
        pictures += [image, np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(image[::2, ::2])]
    olds = [old.detect(p, conf=0.12) for p in pictures]
    if new_version == "faces-haar@default":
        news = [haar.detect(p) for p in pictures]
    else:
        news = [_rescaled(old, p, 0.85, 0.12) for p in pictures]
    metric = AgreementMetric(0.5)
    ours = {}
    for image_id, (o, n) in enumerate(zip(olds, news), 1):
        for i, _, _ in metric.update(o, n).matched:
            ours[(image_id, "face")] = ours.get((image_id, "face"), 0) + 1
    expected = {k: v for k, v in coco_matches(olds, news, labels=["face"]).items() if v}
    capsys.readouterr()
    result = metric.compute()
    assert result.old_boxes > 30 and result.matched >= 3 and result.missing + result.extra >= 5  # matches and misses both
    assert ours == expected
    assert result.matched == sum(expected.values())


def test_planted_miss_fails_recall(project_dir):
    old, blind = versions("faces@v1", "faces@blind")
    images, _ = collect_inputs(["photos"])
    run = run_shadow(images, old, blind)
    assert run.summary.agreement.recall == 0 and run.summary.agreement.missing == 3
    assert gates_failed(run, min_recall=0.9, max_disagreement=0.1) == ["max_disagreement", "min_recall"]


def test_planted_shift_is_caught_by_mean_iou_though_every_box_still_matches(project_dir):
    old, shifted = versions("shapes@v1", "shapes@shifted")
    images, _ = collect_inputs(["shapes"])
    run = run_shadow(images, old, shifted)
    a = run.summary.agreement
    assert a.recall == 1 and a.precision == 1 and a.disagreement == 0
    assert 0.8 < a.mean_iou < 0.95
    assert gates_failed(run, min_recall=0.99, max_disagreement=0, min_mean_iou=0.95) == ["min_mean_iou"]
    same = run_shadow(images, old, old)
    assert gates_failed(same, min_mean_iou=0.95) == []


def test_planted_slowdown_fails_the_latency_ratio(project_dir):
    old, slow = versions("faces@v1", "faces@slow")
    images, _ = collect_inputs(["photos"])
    run = run_shadow(images, old, slow, workers=1)
    assert run.summary.latency_ratio > 3  # 9x the pixels
    assert "max_latency_ratio" in gates_failed(run, max_latency_ratio=2)
    assert gates_failed(run_shadow(images, old, old, workers=1), max_latency_ratio=2) == []


def test_a_version_that_throws_is_counted_and_the_run_goes_on(project_dir, flaky):
    old, bad = versions("faces@v1", flaky)
    images, _ = collect_inputs(["photos"])
    run = run_shadow(images, old, bad)
    failing = sorted(r.source for r in run.records if not r.new.ok)
    assert failing == ["photos/coffee.jpg", "photos/rocket.jpg"]  # the two wider than 520 px
    assert all("planted fault" in str(r.new.error) for r in run.records if not r.new.ok)
    s = run.summary
    assert (s.images, s.compared, s.new_errors, s.old_errors) == (5, 3, 2, 0)
    assert gates_failed(run, policy="default") == ["max_new_errors"]  # on by default


def test_unreadable_images_are_counted_not_compared(project_dir):
    bad = project_dir / "photos" / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("not an image")
    (bad / "truncated.jpg").write_bytes((project_dir / "photos" / "chelsea.jpg").read_bytes()[:3000])
    (old,) = versions("faces@v1")
    images, _ = collect_inputs(["photos"])
    run = run_shadow(images, old, old)
    unreadable = [r for r in run.records if r.input_error is not None]
    assert len(unreadable) == 3 and all(isinstance(r.input_error, InvalidImageError) for r in unreadable)
    assert (run.summary.unreadable, run.summary.compared, run.summary.new_errors) == (3, 5, 0)


def test_most_disagreeing_puts_the_worst_first(project_dir):
    old, new = versions("faces@v1", "faces-haar@default")
    images, _ = collect_inputs(["photos"])
    run = run_shadow(images, old, new)
    worst = most_disagreeing(run.records, 10)
    assert worst and all(not r.agrees for r in worst)
    assert [r.disagreements for r in worst] == sorted((r.disagreements for r in worst), reverse=True)
    assert len(most_disagreeing(run.records, 1)) == 1


def test_a_self_comparison_runs_the_model_once_for_each_side(project_dir):
    """Old and new are the same loaded model here: each side must still run, and be timed, on its own."""
    (v1,) = versions("faces@v1")
    images, _ = collect_inputs(["photos"])
    records = list(replay(images, v1, v1, warm_up=False))
    assert len(records) == 5 and all(r.old is not r.new and r.old.ok and r.new.ok for r in records)
    assert all(r.comparison.agrees for r in records)


def test_a_long_replay_keeps_counts_not_records_and_its_shards_add_up_like_one_run(project_dir):
    """Past ``keep_all`` images the summary keeps counts, a latency sample, the errors and the most
    disagreeing images; its figures are those of a run that kept everything, and so are three shards'."""
    from mldeploy.rollout.shadow import ShadowMetric

    bad = project_dir / "photos" / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("not an image")
    old, haar = versions("faces@v1", "faces-haar@default")
    images, _ = collect_inputs(["photos", "shapes"])
    records = list(replay(images, old, haar))
    refs = (old.spec.ref, haar.spec.ref)
    whole, short = ShadowMetric(*refs), ShadowMetric(*refs, keep_all=4, keep_top=2)
    shards = [ShadowMetric(*refs, keep_all=4, keep_top=2) for _ in range(3)]
    for n, record in enumerate(records):
        whole.update(record)
        short.update(record)
        shards[n % 3].update(record)
    merged = shards[2] + shards[0] + shards[1]
    full = whole.compute()
    assert whole.complete and [r.index for r in whole.records] == list(range(len(records)))
    errors = {r.index for r in records if r.input_error is not None}
    assert len(errors) == 2 and full.unreadable == 2 and full.compared == len(records) - 2
    top = {r.index for r in most_disagreeing(records, 2)}
    assert len(top) == 2 and full.agreement.disagreeing_images > 2
    for metric in (short, merged):
        summary = metric.compute()
        assert not metric.complete and [r.index for r in metric.records] == sorted(errors | top)
        assert summary.agreement == full.agreement
        assert (summary.images, summary.compared, summary.unreadable, summary.new_errors) == (full.images, full.compared, 2, 0)
        assert np.array_equal(summary.latency_pairs, full.latency_pairs) and len(full.latency_pairs) == full.compared
        assert summary.new_latency.p95 == full.new_latency.p95 and summary.old_latency.mean == pytest.approx(full.old_latency.mean)
        assert summary.p95_ratio == full.p95_ratio
    short.reset()
    assert (short.images, short.records, short.compute().agreement.images) == (0, [], 0) and short.complete


def test_the_latency_sample_is_exact_when_small_and_the_same_in_any_order_when_large():
    from mldeploy.rollout.latency import LatencySample

    rng = np.random.default_rng(7)
    values = rng.uniform(0.010, 0.030, (5000, 2))
    exact = LatencySample(size=10_000)
    for i, (a, b) in enumerate(values):
        exact.add(i, a, b)
    exact.add(5000, None, 0.02)  # the old version failed here: a new latency, no pair
    assert np.array_equal(exact.pairs(), values) and not exact.sampled
    old, new = exact.stats()
    assert (old.calls, new.calls) == (5000, 5001) and old.p50 == np.percentile(values[:, 0], 50)

    in_order, shuffled, halves = LatencySample(size=500), LatencySample(size=500), [LatencySample(size=500), LatencySample(size=500)]
    for i, (a, b) in enumerate(values):
        in_order.add(i, a, b)
        halves[i % 2].add(i, a, b)
    for i in rng.permutation(len(values)):
        shuffled.add(int(i), *values[i])
    sample = in_order.pairs()
    assert in_order.sampled and len(sample) == 500
    assert np.array_equal(shuffled.pairs(), sample) and np.array_equal((halves[1] + halves[0]).pairs(), sample)
    old, _ = in_order.stats()
    assert old.calls == 5000 and old.mean == pytest.approx(values[:, 0].mean())  # counts and means stay exact
    assert abs(old.p50 - np.percentile(values[:, 0], 50)) < 0.0015  # a uniform sample: its median is near the true one
