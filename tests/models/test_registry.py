import pytest

from mldeploy.errors import ModelUnavailableError, UnknownModelError
from mldeploy.models import ModelSpec, load_detector, parse_ref


def test_bare_name_means_the_default_version(registry):
    assert registry.resolve("faces").ref == "faces@v1"
    assert registry.resolve("faces@v2").backend == "mtcnn"
    assert registry.resolve("objects").ref == "objects@yolov4-tiny"


def test_zoo_has_every_promised_model(registry):
    refs = {spec.ref for spec in registry.specs}
    assert refs == {
        "faces@v1", "faces@v2", "faces-haar@default", "faces-haar@alt2", "people@hog", "cats@haar",
        "objects@yolov4-tiny", "objects@yolov4", "objects@yolov3", "objects@yolov3-tiny",
    }
    assert len(registry.resolve("objects@yolov3").classes) == 80


def test_embedded_models_have_their_files_inside_packages(registry):
    for ref in ("faces@v1", "faces@v2", "faces-haar@default", "faces-haar@alt2", "people@hog", "cats@haar"):
        assert registry.resolve(ref).missing_files() == [], ref


@pytest.mark.parametrize(
    "ref, message",
    [
        ("nope", "unknown model 'nope'; known models: faces, faces-haar, people, cats, objects"),
        ("faces@v9", "model 'faces' has no version 'v9'; its versions: v1, v2"),
        ("faces@", "bad model reference 'faces@'"),
        ("@v1", "bad model reference '@v1'"),
    ],
)
def test_unknown_references_say_what_exists(registry, ref, message):
    with pytest.raises(UnknownModelError) as err:
        registry.resolve(ref)
    assert str(err.value).startswith(message)
    assert err.value.exit_code == 2


def test_parse_ref():
    assert parse_ref("faces@v2") == ("faces", "v2")
    assert parse_ref(" people ") == ("people", None)


def test_missing_caffe_files_are_named(tmp_path):
    spec = ModelSpec("custom", "v1", "ssd-caffe", ("face",), files={"prototxt": tmp_path / "a.prototxt", "caffemodel": tmp_path / "b.caffemodel"})
    with pytest.raises(ModelUnavailableError, match=f"custom@v1 cannot load: missing a.prototxt, b.caffemodel in {tmp_path}"):
        load_detector(spec)


def test_unreadable_model_file_is_a_load_error_not_a_crash(tmp_path):
    cascade = tmp_path / "cascade.xml"
    cascade.write_text("<not a cascade/>")
    spec = ModelSpec("broken", "v1", "haar", ("face",), files={"cascade": cascade})
    with pytest.raises(ModelUnavailableError) as err:
        load_detector(spec)
    assert err.value.exit_code == 4
