"""``mldeploy eval`` and ``shadow --labels`` on the sample photos and their hand-drawn labels."""

import json
import shutil

import pytest

COCO = "photos/labels/faces.json"
YOLO = "photos/labels/faces-yolo"
PHOTOS = [f"photos/{name}.jpg" for name in ("astronaut", "camera", "chelsea", "coffee", "rocket")]


def test_eval_on_the_sample_labels_coco_and_yolo_agree(cli, project_dir):
    runs = {}
    for labels in (COCO, YOLO):
        result = cli("eval", *PHOTOS, "--labels", labels, "--format", "json")
        assert result.exit_code == 0, result.output
        runs[labels] = json.loads(result.stdout)
    coco, yolo = runs[COCO]["summary"], runs[YOLO]["summary"]
    # faces@v1 finds both faces and calls Chelsea the cat a face: 2 TP, 1 FP
    assert (coco["tp"], coco["fp"], coco["fn"]) == (2, 1, 0) and coco["precision"] == pytest.approx(2 / 3, abs=1e-4) and coco["recall"] == 1.0
    assert coco["map50"] > 0.5 and 0 < coco["map"] < coco["map50"]
    assert {k: coco[k] for k in ("tp", "fp", "fn", "map50")} == {k: yolo[k] for k in ("tp", "fp", "fn", "map50")}
    assert yolo["map"] == pytest.approx(coco["map"], abs=0.02)  # YOLO's six decimals move a box by a fraction of a pixel
    images = {i["image"].rsplit("/", 1)[-1]: i for i in runs[COCO]["images"]}
    assert (images["chelsea.jpg"]["fp"], images["astronaut.jpg"]["tp"]) == (1, 1)
    assert runs[COCO]["problems"] == [] and runs[COCO]["complete"] is True


def test_eval_tables_reports_and_the_better_version(cli, project_dir, tmp_path):
    table = cli("eval", *PHOTOS, "--labels", COCO, "--report", tmp_path / "e.json", "--junit", tmp_path / "e.xml", "--html", tmp_path / "html")
    assert table.exit_code == 0
    text = " ".join(table.output.split())
    assert "mAP@0.5:0.95" in text and "confusion" in text and "images with the most errors" in text
    assert json.loads((tmp_path / "e.json").read_text())["summary"]["fp"] == 1
    assert '<property name="fp" value="1" />' in (tmp_path / "e.xml").read_text()
    page = (tmp_path / "html" / "index.html").read_text()
    assert "chelsea.jpg" in page and "1 false" in page and len(list((tmp_path / "html" / "images").iterdir())) == 1
    v2 = json.loads(cli("eval", *PHOTOS, "--labels", COCO, "--model", "faces@v2", "-f", "json").stdout)["summary"]
    assert (v2["tp"], v2["fp"], v2["fn"]) == (2, 0, 0)
    gated = cli("eval", *PHOTOS, "--labels", COCO, "--min-map", "0.99")
    assert gated.exit_code == 3 and "gate failed: --min-map" in " ".join(gated.output.split())


def test_eval_problems_are_named_counted_and_exit_1(cli, project_dir):
    extra = project_dir / "photos" / "unlabelled.jpg"
    shutil.copy(project_dir / "photos" / "coffee.jpg", extra)
    result = cli("eval", *PHOTOS[:4], str(extra), "--labels", COCO, "-f", "json")
    assert result.exit_code == 1
    problems = {(p["kind"], p["entry"] if p["kind"] != "image without labels" else p["file"]) for p in json.loads(result.stdout)["problems"]}
    assert problems == {("image without labels", str(extra)), ("labels without an image", "rocket.jpg")}
    assert "image without labels" in result.output and "labels without an image" in result.output


def test_eval_unknown_classes_and_label_maps(cli, project_dir):
    labels = json.loads((project_dir / COCO).read_text())
    labels["categories"].append({"id": 2, "name": "cat"})
    labels["annotations"].append({"id": 9, "image_id": 3, "category_id": 2, "bbox": [100, 40, 250, 230], "iscrowd": 0})
    path = project_dir / "with-cat.json"
    path.write_text(json.dumps(labels))
    unknown = cli("eval", *PHOTOS, "--labels", path)
    assert unknown.exit_code == 1 and "class 'cat' is not one of the model's classes" in " ".join(unknown.output.split())
    mapped = cli("eval", *PHOTOS, "--labels", path, "--label-map", "cat=-", "-f", "json")
    assert mapped.exit_code == 0 and json.loads(mapped.stdout)["summary"]["fn"] == 0
    with open(project_dir / "mldeploy.toml", "a") as fh:
        fh.write('\n[labels.map]\ncat = "-"\n')
    assert cli("eval", *PHOTOS, "--labels", path).exit_code == 0


@pytest.mark.parametrize("content, message", [
    ("{broken", "not valid JSON"),
    ('{"images": 1}', "are not COCO instances"),
])
def test_broken_labels_exit_2(cli, project_dir, content, message):
    (project_dir / "bad.json").write_text(content)
    result = cli("eval", *PHOTOS, "--labels", "bad.json")
    assert result.exit_code == 2 and message in result.output


def test_shadow_with_labels_tells_an_improvement_from_a_regression(cli, project_dir):
    """v2 drops v1's false 'face' on the cat: agreement calls it a miss, the labels an improvement."""
    plain = cli("shadow", *PHOTOS, "--new", "v2")
    assert plain.exit_code == 3 and "--min-recall" in plain.output
    slow_ok = ("--max-latency-ratio", "100", "--max-p95-ratio", "100")  # MTCNN is about 8x slower: judged here on answers only
    judged = cli("shadow", *PHOTOS, "--new", "v2", "--labels", COCO, *slow_ok, "-f", "json", "--html", project_dir / "judged")
    assert judged.exit_code == 0, judged.output
    report = json.loads(judged.stdout)
    gates = {g["gate"]: g["status"] for g in report["gates"]}
    assert gates["max_map_drop"] == gates["max_recall_drop"] == "pass" and "min_recall" not in gates  # the truth policy
    truth = report["truth"]
    assert (truth["old"]["fp"], truth["new"]["fp"], truth["new"]["fn"]) == (1, 0, 0) and truth["new"]["precision"] > truth["old"]["precision"]
    assert truth["map_drop"] < 0.02  # its boxes sit a little differently: mAP@0.5:0.95 moves by a fraction of a point
    chelsea = next(i for i in report["images"] if i["image"].endswith("chelsea.jpg"))
    assert chelsea["truth"]["changes"] == [{"change": "missing", "old": 0, "effect": "improvement"}]
    page = (project_dir / "judged" / "index.html").read_text()
    assert "chelsea.jpg</code>: 1 missing" in page and "1 improvements</span>" in page and "0 regressions</span>" in page
    backwards = cli("shadow", *PHOTOS, "--old", "v2", "--new", "v1", "--labels", COCO, "--max-map-drop", "0", "-f", "json")
    chelsea = next(i for i in json.loads(backwards.stdout)["images"] if i["image"].endswith("chelsea.jpg"))
    assert chelsea["truth"]["regressions"] == 1
    assert cli("shadow", *PHOTOS, "--new", "v2", "--min-map", "0.5").exit_code == 2  # a truth gate needs labels


def test_canary_with_labels_and_a_blind_candidate(cli, project_dir):
    result = cli("canary", *PHOTOS, "--new", "blind", "--labels", COCO, "--steps", "50,100", "--dry-run", "-f", "json")
    assert result.exit_code == 3
    failed = {g["gate"] for g in json.loads(result.stdout)["gates"] if g["status"] == "fail"}
    assert {"max_map_drop", "max_recall_drop"} <= failed


def test_skipped_labels_are_an_error_in_the_junit_file_as_in_the_exit_code(cli, project_dir, tmp_path):
    result = cli("eval", *PHOTOS[:4], "--labels", COCO, "--junit", tmp_path / "e.xml")
    assert result.exit_code == 1
    junit = (tmp_path / "e.xml").read_text()
    assert '<error message="1 label problems: entries skipped" type="LabelProblems">labels without an image:' in junit
    clean = cli("eval", *PHOTOS, "--labels", COCO, "--junit", tmp_path / "ok.xml")
    assert clean.exit_code == 0 and "<error" not in (tmp_path / "ok.xml").read_text()


def test_shadow_html_lists_the_skipped_labels(cli, project_dir):
    result = cli("shadow", *PHOTOS[:4], "--new", "blind", "--labels", COCO, "--html", project_dir / "page")
    assert result.exit_code == 3
    page = (project_dir / "page" / "index.html").read_text()
    assert "Label problems (1, skipped)" in page and "labels without an image" in page and "rocket.jpg" in page


def test_eval_junit_counts_add_up_like_shadows(cli, project_dir, tmp_path):
    import xml.etree.ElementTree as ET

    result = cli("eval", *PHOTOS, "--labels", COCO, "--min-map", "0.99", "--junit", tmp_path / "e.xml")
    assert result.exit_code == 3
    root = ET.parse(tmp_path / "e.xml").getroot()
    suites = list(root.iter("testsuite"))
    for suite in suites:
        cases = [c for c in suite if c.tag == "testcase"]
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in suites) and root.get("failures") == "1"
