"""Reading ground truth: COCO, YOLO and Pascal VOC, their problems, and class-name mapping."""

import json

import numpy as np
import pytest

from mldeploy.errors import UsageError
from mldeploy.truth.labels import LabelsError, load_labels, parse_label_map, to_model_classes
from tests.helpers import SAMPLES

LABELS = SAMPLES / "labels"


def test_the_sample_labels_agree_across_coco_and_yolo():
    coco = load_labels(LABELS / "faces.json")
    yolo = load_labels(LABELS / "faces-yolo")
    assert (coco.format, yolo.format) == ("coco", "yolo") and coco.classes == yolo.classes == ["face"]
    assert sorted(coco.images) == ["astronaut.jpg", "camera.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert sorted(yolo.images) == ["astronaut", "camera", "chelsea", "coffee", "rocket"]
    for name in ("astronaut", "camera"):
        c, y = coco.images[f"{name}.jpg"], yolo.images[name]
        assert np.allclose(c.boxes_for(c.size), y.boxes_for(c.size), atol=0.01)
    assert not coco.problems and not yolo.problems
    assert len(coco.images["chelsea.jpg"].labels) == 0  # a background image: nothing to find


def _coco(tmp_path, **changes):
    doc = {"images": [{"id": 1, "file_name": "a/x.jpg", "width": 100, "height": 80}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0}],
           "categories": [{"id": 1, "name": "face"}]}
    doc.update(changes)
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_problems_are_named_and_skipped(tmp_path):
    path = _coco(tmp_path, annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [10, 10, 20, 20]},
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [10, 10, 20, 20]},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [90, 10, 30, 20]},
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 1},
    ])
    labels = load_labels(path)
    truth = labels.images["a/x.jpg"]
    assert truth.labels == ["face", "face"] and truth.ignore.tolist() == [False, True]
    kinds = {(p.kind, p.entry) for p in labels.problems}
    assert kinds == {("unknown class", "annotation 2"), ("labels without an image", "annotation 3"),
                     ("box outside its image", "annotation 4 (image a/x.jpg)")}
    assert "box (90, 10, 120, 30) is outside its 100x80 image" in str([p for p in labels.problems if p.kind == "box outside its image"][0])


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"images": []}', "not COCO instances"),
    ('{"images": [{"id": 1}], "categories": []}', "lacks 'file_name'"),
    ('{"images": [{"id": 1, "file_name": "x.jpg"}], "categories": [], "annotations": [{"image_id": 1}]}', "needs image_id, category_id and a bbox"),
])
def test_broken_coco_files_are_one_line(tmp_path, text, message):
    path = tmp_path / "labels.json"
    path.write_text(text)
    with pytest.raises(LabelsError, match=message):
        load_labels(path)


def test_yolo_names_lines_and_problems(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    (tmp_path / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    (folder / "one.txt").write_text("1 0.5 0.5 0.2 0.4\n\n7 0.5 0.5 0.1 0.1\n0 0.95 0.5 0.2 0.2\n")
    labels = load_labels(tmp_path / "data.yaml")
    assert labels.classes == ["cat", "dog"] and labels.images["one"].labels == ["dog"]
    assert np.allclose(labels.images["one"].boxes_for((200, 100)), [[80, 30, 120, 70]])
    assert [p.kind for p in labels.problems] == ["unknown class", "box outside its image"]
    (folder / "two.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(LabelsError, match="line 1 is not 'class cx cy w h'"):
        load_labels(tmp_path / "data.yaml")
    bare = tmp_path / "elsewhere" / "bare"
    bare.mkdir(parents=True)
    (bare / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(LabelsError, match="no class names; give --names FILE"):
        load_labels(bare)
    (tmp_path / "names.txt").write_text("bird\n")
    assert load_labels(bare, tmp_path / "names.txt").images["x"].labels == ["bird"]


VOC = """<annotation><filename>{name}</filename><size><width>100</width><height>80</height></size>
<object><name>face</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>11</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>
<object><name>face</name><difficult>1</difficult><bndbox><xmin>41</xmin><ymin>11</ymin><xmax>60</xmax><ymax>30</ymax></bndbox></object>
<object><name>face</name><bndbox><xmin>90</xmin><ymin>11</ymin><xmax>130</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def test_pascal_voc_with_difficult_objects_and_hostile_xml(tmp_path):
    folder = tmp_path / "voc"
    folder.mkdir()
    (folder / "x.xml").write_text(VOC.format(name="x.jpg"))
    labels = load_labels(folder)
    truth = labels.images["x.jpg"]
    assert truth.boxes_for((100, 80)).tolist() == [[10, 10, 30, 30], [40, 10, 60, 30]]  # 1-based inclusive -> pixels
    assert truth.ignore.tolist() == [False, True] and [p.kind for p in labels.problems] == ["box outside its image"]
    (folder / "bomb.xml").write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "bbbbbbbbbb"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                                     "<annotation><filename>&c;</filename></annotation>")
    with pytest.raises(LabelsError, match="bomb.xml are not valid Pascal VOC XML"):
        load_labels(folder)


def test_label_maps_inline_file_and_project(tmp_path):
    assert parse_label_map("person=face, cat = -") == {"person": "face", "cat": "-"}
    mapping = tmp_path / "map.txt"
    mapping.write_text("# truth = model\nperson = face\n")
    assert parse_label_map(str(mapping), {"dog": "-", "person": "x"}) == {"dog": "-", "person": "face"}
    with pytest.raises(UsageError, match="write TRUTH=MODEL"):
        parse_label_map("person")
    labels = load_labels(_coco(tmp_path, categories=[{"id": 1, "name": "person"}]))
    unknown = to_model_classes(labels, ["face"], {})
    assert unknown.images["a/x.jpg"].labels == [] and "class 'person' is not one of the model's classes (face)" in unknown.problems[0].message
    mapped = to_model_classes(labels, ["face"], {"person": "face"})
    assert mapped.images["a/x.jpg"].labels == ["face"] and not mapped.problems
    left_out = to_model_classes(labels, ["face"], {"person": "-"})
    assert left_out.images["a/x.jpg"].labels == [] and not left_out.problems


def test_missing_and_mixed_label_folders(tmp_path):
    with pytest.raises(LabelsError, match="do not exist"):
        load_labels(tmp_path / "nothing.json")
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "b.xml").write_text("<annotation/>")
    with pytest.raises(LabelsError, match="mixes .txt and .xml"):
        load_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("x")
    with pytest.raises(LabelsError, match="give a COCO .json file"):
        load_labels(tmp_path / "labels.csv")
