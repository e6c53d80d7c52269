"""Reports a CI job keeps: JSON (every image, or a long replay's errors and most disagreeing images)
and JUnit XML (a case per gate and per image listed).

Files are written to a temporary name and renamed into place, so a crash never leaves half a report,
and never over an input image.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from mldeploy.fileio import atomic_write
from mldeploy.report.serialize import images_listed, report_to_dict, shadow_record_to_dict
from mldeploy.rollout.rehearsal import Report


def write_json(path: Path, report: Report, protect: Sequence[Path] = ()) -> Path:
    return atomic_write(path, (json.dumps(report_to_dict(report), indent=2) + "\n").encode("utf-8"), protect)


def junit_xml(report: Report) -> bytes:
    """JUnit XML that agrees with the exit code: a run that passes has no failing case.

    Suite ``gates``: a case per gate, a failure when it failed (or was inconclusive and inconclusive
    fails the run). Suite ``images``: a case per image listed (every image, but for a long replay: see
    ``images_listed``); an error when the image could not be read or
    the old version failed on it (the run exits 1), or when the new version failed on it and the run
    did not pass. Disagreements (missing, extra, relabelled, drifted boxes) are properties and output
    of their case, never failures: the gates judge them.
    """
    verdict = report.verdict
    root = ET.Element("testsuites", name=f"mldeploy {report.kind} {report.summary.old} -> {report.summary.new}")
    properties = ET.SubElement(root, "properties")
    ET.SubElement(properties, "property", name="verdict", value=verdict.headline)
    if not report.complete:  # a long replay: the cases are its errors and most disagreeing images
        listed = images_listed(report)
        ET.SubElement(properties, "property", name="images_listed", value=f"{listed['listed']} of {listed['of']}: {listed['which']}")
    gates_suite(root, verdict, f"mldeploy.{report.kind}.gates")
    if report.truths is not None:
        label_problems_case(root, report.truths.problems, f"mldeploy.{report.kind}.labels")
    images = ET.SubElement(root, "testsuite", name="images")
    for r in report.records:
        seconds = (r.old.seconds + r.new.seconds) if r.input_error is None else 0.0
        case = ET.SubElement(images, "testcase", classname=f"mldeploy.{report.kind}.images", name=r.source, time=f"{seconds:.4f}")
        if r.input_error is not None:
            ET.SubElement(case, "error", message=str(r.input_error), type=type(r.input_error).__name__)
            continue
        if not r.old.ok:
            ET.SubElement(case, "error", message=f"{r.old.model}: {r.old.error}", type=type(r.old.error).__name__)
        if not r.new.ok:
            message, kind = f"{r.new.model}: {r.new.error}", type(r.new.error).__name__
            if verdict.ok:
                ET.SubElement(case, "system-out").text = f"error (allowed by the gates): {message}"
            else:
                ET.SubElement(case, "error", message=message, type=kind)
        c = r.comparison
        if c is not None and not c.agrees:
            props = ET.SubElement(case, "properties")
            for name, value in (("missing", len(c.missing)), ("extra", len(c.extra)), ("relabelled", len(c.relabelled)),
                                ("drifted", len(c.drifted)), ("old_boxes", len(c.old)), ("new_boxes", len(c.new))):
                ET.SubElement(props, "property", name=name, value=str(value))
            if r.new.ok:
                ET.SubElement(case, "system-out").text = json.dumps(shadow_record_to_dict(r)["comparison"])
    count_cases(root)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(path: Path, report: Report, protect: Sequence[Path] = ()) -> Path:
    return atomic_write(path, junit_xml(report), protect)


def gates_suite(root: ET.Element, verdict, classname: str) -> ET.Element:
    """Suite ``gates``: a case per gate. The failures are exactly the verdict's deciding gates when it does
    not let the version through (the gates its headline names); an inconclusive gate that did not decide
    (let through by ``--inconclusive pass``, or beside failed gates) and a gate not measured are skipped,
    saying why."""
    suite = ET.SubElement(root, "testsuite", name="gates")
    deciding = {g.name for g in verdict.deciding} if not verdict.ok else set()
    for g in verdict.ran:
        case = ET.SubElement(suite, "testcase", classname=classname, name=g.gate.flag)
        if g.name in deciding:
            ET.SubElement(case, "failure", message=g.message, type="GateFailed" if g.failed else "GateInconclusive").text = g.gate.what
        elif g.status == "inconclusive":
            why = "let through by --inconclusive pass" if verdict.ok else "did not decide: the run failed on other gates"
            ET.SubElement(case, "skipped", message=f"{g.message} ({why})")
        elif g.status == "not measured":
            ET.SubElement(case, "skipped", message=g.message)
        else:
            ET.SubElement(case, "system-out").text = g.message
    return suite


def count_cases(root: ET.Element) -> None:
    """``tests``, ``failures``, ``errors`` and ``skipped`` on every suite and their sums on the root, from
    the cases themselves (so the counts cannot disagree with what the file holds)."""
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in root.iter("testsuite"):
        cases = [case for case in suite if case.tag == "testcase"]
        counts = {"tests": len(cases), **{key: sum(case.find(tag) is not None for case in cases)
                                          for key, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped"))}}
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))


def label_problems_case(root: ET.Element, problems, classname: str) -> None:
    """Suite ``labels``: one case, an error when label entries were skipped (the run then exits 1), with
    every problem in its output."""
    suite = ET.SubElement(root, "testsuite", name="labels")
    case = ET.SubElement(suite, "testcase", classname=classname, name="labels")
    if problems:
        ET.SubElement(case, "error", message=f"{len(problems)} label problems: entries skipped", type="LabelProblems").text = (
            "\n".join(f"{p.kind}: {p}" for p in problems))
