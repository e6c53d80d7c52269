"""Bring-your-own models: ONNX (YOLOv5 and YOLOv8 layouts), TensorFlow SavedModel and TFLite, declared in
mldeploy.toml and built by the tests, with outputs known in advance."""

import numpy as np
import pytest

from mldeploy.errors import ConfigError
from mldeploy.project import Project
from tests.helpers.tiny_darknet import red_square_image

SQUARE = (96, 96, 192, 192)


def detect(ref, image):
    project = Project()
    return project.load(project.registry().resolve(ref)).detect(image)


def test_onnx_layouts_give_the_darknet_answer(byo_project):
    image = red_square_image(320, SQUARE)
    darknet = detect("red@darknet", image)
    assert len(darknet) > 3 and set(darknet.label) == {"red"}
    for ref in ("red@v5", "red@v8"):
        onnx = detect(ref, image)
        assert np.allclose(onnx.xyxy, darknet.xyxy, atol=0.5) and np.allclose(onnx.confidence, darknet.confidence, atol=1e-3), ref
        assert list(onnx.label) == list(darknet.label)
    assert len(detect("red@v5", np.zeros((320, 320, 3), np.uint8))) == 0


@pytest.mark.parametrize("ref, tolerance", [("red@saved", 0), ("red@lite", 5)])  # TFLite sees a 64x64 copy
def test_tensorflow_models_box_the_red_square(byo_project, ref, tolerance):
    found = detect(ref, red_square_image(320, SQUARE))
    assert list(found.label) == ["red"] and found.confidence[0] == pytest.approx(0.9)
    assert np.allclose(found.xyxy[0], SQUARE, atol=tolerance)
    assert len(detect(ref, np.zeros((200, 300, 3), np.uint8))) == 0


def test_a_class_filter_on_a_version(byo_project):
    image = red_square_image(320, SQUARE)
    assert len(detect("red@v5", image)) > 0 and len(detect("red@only-blue", image)) == 0


@pytest.mark.parametrize(
    "entry, message",
    [
        ('[models.x.v1]\nbackend = "onnx"\nmodel = "m.onnx"\n', "say which labels"),
        ('[models.x.v1]\nbackend = "tensorflow"\nlabel_map = "l.pbtxt"\n', "needs saved_model"),
        ('[models.x.v1]\nbackend = "onnx"\nmodel = "m.onnx"\nclasses = ["a"]\nnms = 3\n', "nms = 3"),
        ('[models.x.v1]\nbackend = "onnx"\nmodel = "m.onnx"\nclasses = ["a"]\ninput_size = "big"\n', "input_size = 'big'"),
    ],
)
def test_declaration_mistakes_name_the_key(byo_project, entry, message):
    with open(byo_project / "mldeploy.toml", "a") as fh:
        fh.write(entry)
    with pytest.raises(ConfigError, match=message):
        Project().registry()
