import json


def test_models_table(cli):
    result = cli("models")
    assert result.exit_code == 0
    for ref in ("faces@v1", "faces@v2", "faces-haar@alt2", "people@hog", "cats@haar", "objects@yolov3-tiny"):
        assert ref in result.stdout


def test_models_json_reports_presence_of_weights(cli, yolo_dir):
    doc = json.loads(cli("models", "--format", "json").stdout)
    rows = {row["model"]: row for row in doc["models"]}
    assert rows["faces@v1"]["available"] and rows["faces@v1"]["live"]
    assert rows["faces@v2"]["backend"] == "mtcnn" and not rows["faces@v2"]["live"]
    assert not rows["objects@yolov4"]["available"]
    assert rows["objects@yolov4"]["missing"] == [str(yolo_dir / "yolov4.cfg"), str(yolo_dir / "yolov4.weights")]
    assert len(rows["objects@yolov4"]["classes"]) == 80


def test_version_and_help(cli):
    assert cli("--version").stdout.startswith("mldeploy ")
    result = cli("--help")
    assert result.exit_code == 0 and "detect" in result.stdout and "models" in result.stdout
