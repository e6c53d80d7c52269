"""Hostile labels files (issue: hardening, second round): each is one line naming the file and exit 2,
with bounded memory, never "unexpected ..." (exit 1 means "entries skipped"). Duplicates are named."""

import json
import resource
import subprocess
import sys

import pytest

from mldeploy.truth.labels import LabelsError, load_labels, parse_label_map
from tests.helpers import subprocess_env

PHOTOS = [f"photos/{name}.jpg" for name in ("astronaut", "camera", "chelsea", "coffee", "rocket")]


def _coco(tmp_path, text: str):
    path = tmp_path / "labels.json"
    path.write_text(text)
    return path


def _doc(**changes):
    doc = {"images": [{"id": 1, "file_name": "x.jpg", "width": 100, "height": 80}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
           "categories": [{"id": 1, "name": "face"}]}
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize("text", [
    "[" * 100_000,
    _doc(images=[{"id": 1, "file_name": "x.jpg", "width": 1e400, "height": 80}]).replace("Infinity", "1e400"),
    _doc(images=[{"id": 1e400, "file_name": "x.jpg", "width": 100, "height": 80}]).replace("Infinity", "1e400"),
    _doc(annotations=5),
    _doc(images=[{"id": [1], "file_name": "x.jpg", "width": 100, "height": 80}]),
    _doc(categories=[{"id": 1, "name": {"a": 1}}]),
])
def test_hostile_coco_files_are_one_line_labels_errors(tmp_path, text):
    with pytest.raises(LabelsError) as info:
        load_labels(_coco(tmp_path, text))
    assert "labels.json" in str(info.value) and "\n" not in str(info.value)


def _voc(tmp_path, width="100"):
    folder = tmp_path / "voc"
    folder.mkdir()
    (folder / "x.xml").write_text(f"<annotation><filename>x.jpg</filename><size><width>{width}</width><height>80</height></size>"
                                  "<object><name>face</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
                                  "</annotation>")
    return folder


def test_a_voc_width_of_1e400_is_a_labels_error(tmp_path):
    with pytest.raises(LabelsError, match="x.xml"):
        load_labels(_voc(tmp_path, "1e400"))


def _yolo(tmp_path, yaml_text: str):
    folder = tmp_path / "yolo"
    folder.mkdir()
    (folder / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (folder / "data.yaml").write_text(yaml_text)
    return folder


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefghi", "bcdefghij"))


@pytest.mark.parametrize("names", ["names: [*j]\n", "names: {0: *j}\n"])
def test_a_yaml_alias_bomb_is_refused_with_bounded_memory(tmp_path, names):
    with pytest.raises(LabelsError, match="names"):
        load_labels(_yolo(tmp_path, BOMB + names))


def test_a_data_yaml_nested_20000_deep_is_a_labels_error(tmp_path):
    with pytest.raises(LabelsError, match="data.yaml"):
        load_labels(_yolo(tmp_path, "names: " + "[" * 20_000 + "]" * 20_000 + "\n"))


def test_names_and_label_map_files_too_big_or_not_utf8_are_usage_errors(tmp_path):
    big, latin = tmp_path / "big.txt", tmp_path / "latin.txt"
    big.write_text("face\n" * 300_000)
    latin.write_bytes("f\xe4ce=face\n".encode("latin-1"))
    for path in (big, latin):
        with pytest.raises(LabelsError, match=path.name):
            parse_label_map(str(path))
        folder = tmp_path / f"yolo-{path.stem}"
        folder.mkdir()
        (folder / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        with pytest.raises(LabelsError, match=path.name):
            load_labels(folder, names=path)


def test_duplicate_coco_ids_and_file_names_are_named_and_skipped(tmp_path):
    doc = _doc(images=[{"id": 1, "file_name": "x.jpg", "width": 100, "height": 80}, {"id": 1, "file_name": "y.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "x.jpg", "width": 100, "height": 80}])
    labels = load_labels(_coco(tmp_path, doc))
    kinds = [(p.kind, str(p)) for p in labels.problems]
    assert any("duplicate" in kind and "id 1" in text for kind, text in kinds), kinds
    assert any("duplicate" in kind and "x.jpg" in text for kind, text in kinds), kinds
    assert "y.jpg" not in labels.images and "x.jpg" not in labels.images  # neither entry of a duplicate is trusted


def test_two_voc_files_naming_one_image_are_named_and_skipped(tmp_path):
    folder = _voc(tmp_path)
    (folder / "copy.xml").write_text((folder / "x.xml").read_text())
    labels = load_labels(folder)
    assert "x.jpg" not in labels.images and any("duplicate" in p.kind for p in labels.problems)


def test_the_alias_bomb_through_the_command_line_is_one_line_exit_2_in_bounded_memory(project_dir):
    folder = project_dir / "yolo"
    folder.mkdir()
    for name in ("astronaut", "camera"):
        (folder / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (folder / "data.yaml").write_text(BOMB + "names: [*j]\n")

    def cap():  # 3 GB of address space: the bomb grew past 4 GB before the fix
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    result = subprocess.run([sys.executable, "-m", "mldeploy", "eval", *PHOTOS[:2], "--labels", str(folder), "--model", "faces-haar@default"],
                            cwd=project_dir, env=subprocess_env(), capture_output=True, text=True, timeout=120, preexec_fn=cap)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data.yaml" in errors[0] and "unexpected" not in errors[0]
