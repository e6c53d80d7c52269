"""`mldeploy models validate` and `models pin`, and bring-your-own models through detect, shadow and canary."""

import json


def test_validate_every_project_version_and_pin_them(cli, byo_project):
    result = cli("models", "validate", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {r["ref"]: r for r in json.loads(result.stdout)["versions"]}
    for ref in ("red@v5", "red@v8", "red@darknet", "red@saved", "red@lite", "shapes@v1", "faces@blind"):
        assert rows[ref]["ok"] and rows[ref]["loaded"] and rows[ref]["pins"] == "pinned now", ref
    assert rows["red@v5"]["detections"] > 0  # the test picture has a red square
    again = json.loads(cli("models", "validate", "red@v5", "--format", "json").stdout)["versions"][0]
    assert again["pins"] == "unchanged"


def test_every_mistake_is_one_line_naming_the_key_and_the_fix(cli, byo_project):
    (byo_project / "nets" / "red.tflite").unlink()
    (byo_project / "nets" / "red-v8.onnx").write_bytes(b"not an onnx file")
    result = cli("models", "validate", "red@lite", "red@v8", "red@v5")
    assert result.exit_code == 4
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert 'red@lite: model = "' in errors[0] and "no such file or folder; fix the path in" in errors[0]
    assert errors[1].startswith("error: red@v8") and "cannot load" in errors[1]
    assert "red@v5" in result.stdout and "ok" in result.stdout


def test_a_changed_file_fails_validation_until_pinned_again(cli, byo_project):
    assert cli("models", "validate", "red@darknet").exit_code == 0
    weights = byo_project / "nets" / "red.weights"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x3f")  # same size, one weight changed
    result = cli("models", "validate", "red@darknet")
    assert result.exit_code == 4 and "changed since it was pinned" in result.stderr and "mldeploy models pin red@darknet" in result.stderr
    assert cli("models", "pin", "red@darknet").exit_code == 0
    assert cli("models", "validate", "red@darknet").exit_code == 0


def test_validate_with_nothing_of_your_own(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("models", "validate")
    assert result.exit_code == 2 and "no versions of your own" in result.stderr


def test_your_models_through_detect_shadow_and_canary(cli, byo_project):
    doc = json.loads(cli("detect", "shapes", "-m", "red@v8", "-f", "json").stdout)
    assert doc["model"] == "red@v8" and all(r["count"] > 0 for r in doc["results"])
    same = cli("shadow", "shapes", "-m", "red", "--old", "darknet", "--new", "v5", "--max-disagreement", "0", "--min-mean-iou", "0.99")
    assert same.exit_code == 0, same.output  # two formats of one network agree exactly
    lite = cli("shadow", "shapes", "-m", "red", "--old", "saved", "--new", "lite", "--min-recall", "1", "--format", "json")
    assert lite.exit_code == 0 and json.loads(lite.stdout)["summary"]["mean_iou"] > 0.9
    canary = cli("canary", "shapes", "-m", "red", "--old", "v5", "--new", "v8", "--steps", "50,100", "--max-disagreement", "0")
    assert canary.exit_code == 0 and "promoted red: v5 -> v8" in canary.stderr
