"""Report files: JSON, JUnit XML and the HTML page (opened in a real headless browser when one is installed)."""

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import cv2
import pytest

from mldeploy.errors import OutputError
from mldeploy.models import load_detector
from mldeploy.pipeline import collect_inputs
from mldeploy.project import Project
from mldeploy.report.html import HTML_MARKER, write_html
from mldeploy.report.json_junit import write_json, write_junit
from mldeploy.rollout.gates import evaluate, resolve_bounds
from mldeploy.rollout.rehearsal import Report
from mldeploy.rollout.shadow import run_shadow
from tests.helpers import CHROMIUM_FLAGS, chromium


@pytest.fixture
def report(project_dir):
    """faces@v1 vs faces-haar@default on the photos, one of them with an awkward name, plus a broken file."""
    photos = project_dir / "photos"
    shutil.copy(photos / "chelsea.jpg", photos / 'odd <name> & "quotes".jpg')  # a disagreeing image
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    registry = Project().registry()
    old, new = (load_detector(registry.resolve(r)) for r in ("faces@v1", "faces-haar@default"))
    images, _ = collect_inputs(["photos"])
    run = run_shadow(images, old, new)
    gates = evaluate(run.summary, resolve_bounds({"min_recall": 0.99, "max_new_errors": 0, "min_images": 1}, policy="none"))
    return Report("shadow", run.records, run.summary, gates, {"old": "faces@v1", "new": "faces-haar@default"})


def test_json_has_every_image_and_the_verdict(report, tmp_path):
    doc = json.loads(write_json(tmp_path / "out.json", report).read_text())
    assert doc["passed"] is False and [g["gate"] for g in doc["gates"] if not g["passed"]] == ["min_recall"]
    assert len(doc["images"]) == 7
    broken = next(i for i in doc["images"] if i["image"].endswith("broken.jpg"))
    assert broken["error_type"] in ("InvalidImageError", "NotAnImageError")
    compared = [i for i in doc["images"] if "comparison" in i]
    assert len(compared) == doc["summary"]["compared"] == 6
    disagreeing = [i for i in compared if not i["comparison"]["agrees"]]
    assert len(disagreeing) == doc["summary"]["disagreeing_images"] > 0
    one = compared[0]
    assert set(one) >= {"image", "old", "new", "comparison"} and "inference_ms" in one["old"]


def test_junit_has_a_case_per_gate_and_per_image(report, tmp_path):
    root = ET.parse(write_junit(tmp_path / "junit.xml", report)).getroot()
    gates, images = root.findall("testsuite")
    assert [c.get("name") for c in gates] == ["--min-recall", "--max-new-errors", "--min-images"]
    assert gates.get("failures") == "1" and gates.find("testcase/failure").get("message").startswith("--min-recall:")
    assert len(images) == 7 and images.get("errors") == "1"
    # Disagreements are the gates' to judge: each disagreeing image carries them as properties, never as a failure.
    assert images.get("failures") == "0"
    with_properties = [c for c in images.findall("testcase") if c.find("properties") is not None]
    assert len(with_properties) == report.summary.agreement.disagreeing_images > 0
    assert {p.get("name") for p in with_properties[0].iter("property")} >= {"missing", "extra", "relabelled", "drifted"}
    assert root.get("tests") == "10"


def test_html_page_and_images(report, tmp_path):
    index = write_html(tmp_path / "html", report)
    page = index.read_text()
    assert "FAIL" in page and "faces-haar@default" in page and "--min-recall" in page
    assert 'odd &lt;name&gt; &amp; &quot;quotes&quot;.jpg' in page and "<name>" not in page
    sources = [line.split('src="')[1].split('"')[0] for line in page.split("<img")[1:]]
    assert len(sources) == report.summary.agreement.disagreeing_images
    for src in sources:
        picture = cv2.imread(str(index.parent / src))
        assert picture is not None and picture.shape[1] > picture.shape[0]  # two images side by side
    assert (index.parent / HTML_MARKER).exists()


def test_html_replaces_an_earlier_report_but_never_other_files(report, tmp_path):
    target = tmp_path / "html"
    write_html(target, report)
    (target / "images" / "stale.jpg").write_bytes(b"old")
    write_html(target, report)
    assert not (target / "images" / "stale.jpg").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="other files"):
        write_html(mine, report)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    with pytest.raises(OutputError, match="is a file"):
        write_html(mine / "thesis.tex", report)
    assert not list(tmp_path.glob(".mldeploy-report-*"))  # no staging folder left behind


def test_reports_never_overwrite_an_input(report, project_dir):
    inputs = [r.item.path for r in report.records]
    before = (project_dir / "photos" / "chelsea.jpg").read_bytes()
    with pytest.raises(OutputError, match="input image"):
        write_json(project_dir / "photos" / "chelsea.jpg", report, protect=inputs)
    with pytest.raises(OutputError, match="other files|input images"):
        write_html(project_dir / "photos", report, protect=inputs)
    assert (project_dir / "photos" / "chelsea.jpg").read_bytes() == before


@pytest.mark.skipif(chromium() is None, reason="no Chromium installed (apt-get install chromium)")
def test_html_report_opens_in_a_headless_browser(report, tmp_path):
    """Chromium loads the page from disk; a screenshot shows the first side-by-side image rendered, and
    the DOM it built has every image loaded (naturalWidth > 0)."""
    index = write_html(tmp_path / "html", report)
    flags = ["--headless", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files"]
    # Append a probe that records, in the page title, how many images loaded.
    probe = tmp_path / "html" / "probe.html"
    probe.write_text(index.read_text().replace(
        "</body>", "<script>addEventListener('load', () => { const imgs = [...document.images];"
        " document.title = 'loaded ' + imgs.filter(i => i.complete && i.naturalWidth > 0).length + ' of ' + imgs.length; });</script></body>"
    ).replace('loading="lazy"', ""))
    dom = subprocess.run([chromium(), *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    n = report.summary.agreement.disagreeing_images
    assert f"<title>loaded {n} of {n}</title>" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([chromium(), *flags, f"--screenshot={shot}", "--window-size=1400,2400", index.as_uri()], capture_output=True, timeout=120)
    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[:2] == (2400, 1400)
    assert picture.std() > 20  # not a blank page: text, tables and photos were drawn
