"""Reports a CI job keeps: JSON (every image) and JUnit XML (a case per gate and per image).

Files are written to a temporary name and renamed into place, so a crash never leaves half a report,
and never over an input image.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from mldeploy.fileio import atomic_write
from mldeploy.report.serialize import report_to_dict, shadow_record_to_dict
from mldeploy.rollout.rehearsal import Report


def write_json(path: Path, report: Report, protect: Sequence[Path] = ()) -> Path:
    return atomic_write(path, (json.dumps(report_to_dict(report), indent=2) + "\n").encode("utf-8"), protect)


def junit_xml(report: Report) -> bytes:
    """JUnit XML: suite ``gates`` (a case per gate) and suite ``images`` (a case per image; a failure
    when the versions disagree on it, an error when it could not be read or a version raised)."""
    root = ET.Element("testsuites", name=f"mldeploy {report.kind} {report.summary.old} -> {report.summary.new}")
    gates = ET.SubElement(root, "testsuite", name="gates")
    for g in report.gates:
        case = ET.SubElement(gates, "testcase", classname=f"mldeploy.{report.kind}.gates", name=g.gate.flag)
        if not g.passed:
            ET.SubElement(case, "failure", message=g.message, type="GateFailed").text = g.gate.what
    images = ET.SubElement(root, "testsuite", name="images")
    for r in report.records:
        seconds = (r.old.seconds + r.new.seconds) if r.input_error is None else 0.0
        case = ET.SubElement(images, "testcase", classname=f"mldeploy.{report.kind}.images", name=r.source, time=f"{seconds:.4f}")
        if r.input_error is not None:
            ET.SubElement(case, "error", message=str(r.input_error), type=type(r.input_error).__name__)
        elif not (r.old.ok and r.new.ok):
            for side in (r.old, r.new):
                if not side.ok:
                    ET.SubElement(case, "error", message=f"{side.model}: {side.error}", type=type(side.error).__name__)
        elif not r.comparison.agrees:
            c = r.comparison
            message = f"{len(c.missing)} missing, {len(c.extra)} extra, {len(c.relabelled)} relabelled ({len(c.old)} old boxes, {len(c.new)} new)"
            ET.SubElement(case, "failure", message=message, type="Disagreement").text = json.dumps(shadow_record_to_dict(r)["comparison"])
    for suite in (gates, images):
        cases = list(suite)
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(case.find("failure") is not None for case in cases)))
        suite.set("errors", str(sum(case.find("error") is not None for case in cases)))
    root.set("tests", str(len(report.gates) + len(report.records)))
    root.set("failures", str(int(gates.get("failures")) + int(images.get("failures"))))
    root.set("errors", images.get("errors"))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(path: Path, report: Report, protect: Sequence[Path] = ()) -> Path:
    return atomic_write(path, junit_xml(report), protect)
