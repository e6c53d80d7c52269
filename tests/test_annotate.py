"""Drawing: boxes land where the detections are, in their colours; the comparison view is two panels."""

import numpy as np

from mldeploy.annotate import EXTRA, MATCHED, MISSING, BoxAnnotator, ComparisonAnnotator, encode_image, label_colour
from mldeploy.compare import match
from mldeploy.detections import Detections
from mldeploy.images import decode_image


def dets(boxes, labels):
    n = len(boxes)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), [0.9] * n, [0] * n, labels, (200, 100))


def test_boxes_are_drawn_on_a_copy_in_the_label_colour():
    image = np.zeros((100, 200, 3), np.uint8)
    drawn = BoxAnnotator(thickness=2).annotate(image, dets([[20, 40, 120, 90]], ["cat"]))
    assert not image.any()  # the input is untouched
    assert tuple(drawn[65, 20]) == label_colour("cat")  # the left edge of the box, below its label
    assert not drawn[65, 70].any()  # the inside is not filled


def test_the_comparison_shows_both_versions_side_by_side():
    image = np.zeros((100, 200, 3), np.uint8)
    old = dets([[10, 40, 60, 90], [120, 40, 190, 90]], ["face", "face"])
    new = dets([[12, 40, 60, 90], [70, 10, 110, 30]], ["face", "face"])
    panel = ComparisonAnnotator().annotate(image, match(old, new), ("old", "new"))
    banner = 28
    assert panel.shape == (100 + banner, 2 * 200 + 8, 3)
    assert tuple(panel[banner + 70, 10]) == MATCHED and tuple(panel[banner + 70, 120]) == MISSING  # old side
    assert tuple(panel[banner + 25, 208 + 70]) == EXTRA  # new side: the box only the new version found


def test_encoded_images_decode_again():
    image = np.full((30, 40, 3), 200, np.uint8)
    for extension in (".jpg", ".png", ".webp", ".bmp"):
        assert decode_image(encode_image(image, extension)).shape == (30, 40, 3)


def test_text_is_readable_on_its_background_and_lines_grow_with_the_image():
    from mldeploy.annotate import line_thickness, text_colour

    assert text_colour((255, 255, 200)) == (0, 0, 0)  # light cyan (BGR): black text
    assert text_colour((130, 0, 40)) == (255, 255, 255)  # dark blue-purple: white text
    assert line_thickness(640, 480) == 2 and line_thickness(4000, 3000) == 8


def test_two_overlapping_boxes_of_one_label_stay_apart():
    image = np.full((100, 200, 3), 255, np.uint8)
    drawn = BoxAnnotator(thickness=2).annotate(image, dets([[20, 40, 120, 90], [24, 44, 124, 94]], ["cat", "cat"]))
    between = drawn[65, 19:28]  # across both left edges: the dark edges separate the two same-coloured lines
    assert (between.max(axis=1) < 60).any() and (np.all(between == label_colour("cat"), axis=1)).any()
