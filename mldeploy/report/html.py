"""The HTML report: a folder with ``index.html`` and ``images/`` (old and new side by side).

The folder is built next to its destination and renamed into place, so a crash never leaves half a
report; nothing is ever written over an input image, and a folder is replaced only when it is empty or
an earlier mldeploy report (it carries a marker file).
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from mldeploy.errors import MldeployError, OutputError
from mldeploy.fileio import REPORT_MARKER, check_folder_destination, readable_like_any_file
from mldeploy.report import formats as fmt
from mldeploy.rollout.rehearsal import Report
from mldeploy.rollout.shadow import ShadowRecord, most_disagreeing

HTML_MARKER = REPORT_MARKER


def write_html(folder: Path, report: Report, protect: Sequence[Path] = (), max_images: int = 200) -> Path:
    """A folder with ``index.html`` and ``images/``: summary, gates, per-label table, errors, and the
    disagreeing images with old and new side by side (the ``max_images`` worst of them)."""
    from mldeploy.annotate import ComparisonAnnotator

    def build(staging: Path) -> str:
        annotator = ComparisonAnnotator()
        figures = []
        for n, record in enumerate(most_disagreeing(report.records, max_images), 1):
            name, error = draw(staging, n, record.item, lambda image: annotator.annotate(
                image, record.comparison, (f"old: {record.old.model}", f"new: {record.new.model}")))
            figures.append(_figure(record, name, error, report.truths))
        return _page(report, figures, report.summary.agreement.disagreeing_images)

    return write_report_folder(folder, protect, build)


def draw(staging: Path, n: int, source, annotate) -> tuple[str | None, str | None]:
    """``images/NNNN.jpg`` drawn by ``annotate(image)`` on ``source`` (an ImageInput, or the path or URI it
    was shown as), read back now: only the images a page shows are read again. ``(its name, None)``, or
    ``(None, why not)`` when the image changed or vanished since it was read."""
    from mldeploy.annotate import encode_image
    from mldeploy.pipeline import ImageInput, read_input

    item = source if isinstance(source, ImageInput) else ImageInput(Path(source), str(source), Path("."))
    name = f"images/{n:04d}.jpg"
    try:
        (staging / name).write_bytes(encode_image(annotate(read_input(item)), ".jpg", 85))
    except MldeployError as exc:
        return None, str(exc)
    return name, None


def write_report_folder(folder: Path, protect: Sequence[Path], build) -> Path:
    """Build a report folder next to ``folder`` (``build(staging)`` writes ``images/`` and returns the
    page) and rename it into place."""
    folder = Path(folder)
    check_folder_destination(folder, protect, "--html")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".mldeploy-report-", dir=folder.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {folder}: {exc.strerror or exc}") from None
    try:
        readable_like_any_file(staging, folder=True)
        (staging / "images").mkdir()
        (staging / HTML_MARKER).write_text("written by mldeploy; this folder is replaced by the next report\n")
        page = build(staging)
        (staging / "index.html").write_text(page, encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except OSError as exc:
        raise OutputError(f"cannot write {folder}: {exc.strerror or exc}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder / "index.html"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left} .pass{color:#157f3b;font-weight:600} .fail{color:#c62828;font-weight:600}
.verdict{display:inline-block;padding:.2em .7em;border-radius:4px;color:#fff} .verdict.pass{background:#157f3b} .verdict.fail{background:#c62828}
.verdict.inconclusive,.verdict.report-only{background:#a86b00} .inconclusive{color:#a86b00;font-weight:600}
figure{margin:1.5em 0} figure img{max-width:100%;border:1px solid #ccc} figcaption{font-size:.95em;margin-top:.3em}
.legend span{display:inline-block;padding:0 .5em;margin-right:.5em;color:#fff;border-radius:3px}
code{background:#f4f4f4;padding:0 .25em}
"""


def _figure(record: ShadowRecord, src: str | None, error: str | None, truths=None) -> str:
    c = record.comparison
    judged = ""
    if truths is not None and record.old.ok and record.new.ok:
        from mldeploy.report.serialize import record_truth

        verdict = record_truth(record, truths)
        if verdict is not None:
            judged = (f'; against the labels: <span class="pass">{verdict["improvements"]} improvements</span>, '
                      f'<span class="fail">{verdict["regressions"]} regressions</span> (old TP/FP/FN {verdict["old"]["tp"]}/{verdict["old"]["fp"]}/'
                      f'{verdict["old"]["fn"]}, new {verdict["new"]["tp"]}/{verdict["new"]["fp"]}/{verdict["new"]["fn"]})')
    caption = (
        f"<code>{html.escape(record.source)}</code>: {len(c.missing)} missing, {len(c.extra)} extra, "
        f"{len(c.relabelled)} relabelled, {len(c.drifted)} drifted; {len(c.old)} old boxes, {len(c.new)} new"
        + (f"; mean IoU {c.mean_iou:.3f}" if c.mean_iou is not None else "")
        + (f"; <b>the new version failed</b>: {html.escape(str(record.new.error))}" if c.new_failed else "")
        + judged
    )
    if src is None:
        return f"<figure><figcaption>{caption} (image not shown: {html.escape(error or '')})</figcaption></figure>"
    alt = html.escape(f"{record.source}: old and new side by side", quote=True)
    return f'<figure><img src="{src}" alt="{alt}" loading="lazy"><figcaption>{caption}</figcaption></figure>'


def _label_problems(report: Report) -> str:
    """With --labels: the entries skipped (the run exits 1 for them), as eval's report lists them."""
    problems = report.truths.problems if report.truths is not None else []
    return f"<h2>Label problems ({len(problems)}, skipped)</h2>" + problems_table(problems) if problems else ""


def problems_table(problems) -> str:
    """Skipped label entries, at most 500 of them (the JSON report has every one)."""
    esc = html.escape
    return _rows([(esc(p.kind), esc(p.file), esc(p.entry), esc(p.message)) for p in problems[:500]], ("problem", "file", "entry", "why"))


def gates_html(gates, verdict) -> str:
    """The verdict, the gates that decided it, and every gate with its figure, bound, evidence and result:
    the one gates section of every HTML report (shadow, canary, eval)."""
    esc = html.escape
    decided = f"<p><b>{esc(verdict.headline)}</b>" + "".join(f"<br><code>{esc(g.message)}</code>" for g in verdict.deciding if not verdict.ok) + "</p>"
    status = {"pass": '<span class="pass">pass</span>', "fail": '<span class="fail">FAIL</span>',
              "inconclusive": '<span class="inconclusive">INCONCLUSIVE</span>', "not measured": "not measured"}
    unjudged = {g.name: ("inconclusive, let through by --inconclusive pass" if verdict.ok else "inconclusive (did not decide)") for g in verdict.unjudged}
    rows = [(f"<code>{esc(g.gate.flag)}</code>", esc(g.gate.show(g.value, g.gate.scaled(g.bound))), esc(g.bound_text), esc(g.evidence),
             f'<span class="inconclusive">{esc(unjudged[g.name])}</span>' if g.name in unjudged else status[g.status])
            for g in gates]
    return decided + _rows(rows, ("gate", "value", "bound", "evidence", "result"))


def _rows(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _partial_note(report: Report, listed: int) -> str:
    """What a long replay's page leaves out, and where it is."""
    s = report.summary
    if report.complete or not (s.unreadable or s.old_errors or s.new_errors):
        return ""
    where = f" Every image's row is in <code>{html.escape(str(report.settings['records']))}</code>." if report.settings.get("records") else ""
    return (f"<p>{listed} images with an error are listed ({s.unreadable} unreadable, {s.old_errors} old-version and {s.new_errors} "
            f"new-version errors in all).{where}</p>")


def _page(report: Report, figures: list[str], disagreeing: int) -> str:
    s = report.summary
    a = s.agreement
    esc = html.escape
    v = report.verdict
    verdict = f'<span class="verdict {v.status.replace(" ", "-")}">{esc(v.status.upper())}</span>'
    gates = gates_html(report.gates, v)
    summary = _rows(
        [
            ("images", s.images), ("compared (both versions answered)", s.compared), ("unreadable images", s.unreadable),
            (f"errors of {esc(s.old)}", s.old_errors), (f"errors of {esc(s.new)}", s.new_errors),
            ("images with any disagreement", f"{a.disagreeing_images} ({fmt.share(a.disagreement)})"),
            ("precision (new boxes matching old)", fmt.score(a.precision)), ("recall (old boxes found again)", fmt.score(a.recall)),
            ("F1", fmt.score(a.f1)), ("mean IoU of matches", fmt.score(a.mean_iou)),
            (f"drifted matches (IoU &lt; {s.drift_iou:g})", f"{a.drifted} ({fmt.share(a.drift)})"),
            ("recall on answered images only", fmt.score(a.answered.recall if a.answered else None)),
            ("boxes old / new / matched", f"{a.old_boxes} / {a.new_boxes} / {a.matched}"),
            ("latency p50 old / new (ms), ratio (90% interval)", f"{fmt.ms(s.old_latency.p50)} / {fmt.ms(s.new_latency.p50)}, {fmt.interval(s.p50_ratio)}"),
            ("latency p95 old / new (ms), ratio (90% interval)", f"{fmt.ms(s.old_latency.p95)} / {fmt.ms(s.new_latency.p95)}, "
                                                                 f"{fmt.interval(s.p95_ratio_estimate)}"),
        ],
        ("", "value"),
    )
    labels = _rows(
        [(esc(label), x.old, x.new, f"{x.count_change:+d}", x.matched, x.missing, x.extra, x.relabelled, f"{x.recall:.3f}", f"{x.precision:.3f}")
         for label, x in a.per_label.items()],
        ("label", "old", "new", "change", "matched", "missing", "extra", "relabelled", "recall", "precision"),
    )
    errors = [
        (f"<code>{esc(r.source)}</code>", esc(str(r.input_error)) if r.input_error is not None
         else "; ".join(esc(f"{side.model}: {side.error}") for side in (r.old, r.new) if not side.ok))
        for r in report.records if r.input_error is not None or not (r.old.ok and r.new.ok)
    ]
    timeline = ""
    if report.timeline is not None:
        timeline = "<h2>Canary timeline</h2>" + _rows(
            [(f"{t.share:g}%", t.canary_requests, fmt.share(t.summary.agreement.disagreement) if t.summary else "",
              t.summary.new_errors if t.summary else "", fmt.ms(t.summary.new_latency.p50) if t.summary else "", esc(t.verdict))
             for t in report.timeline],
            ("step", "canary requests", "disagreement", "errors", "new p50 (ms)", "verdict"),
        )
    shown = len(figures)
    more = f" The {shown} most disagreeing are shown." if shown < disagreeing else ""
    legend = ('<p class="legend"><span style="background:#28a03c">both found</span><span style="background:#dc2828">only old</span>'
              '<span style="background:#1478dc">only new</span><span style="background:#ff9600">relabelled</span>'
              '<span style="background:#c828c8">drifted</span> dashed on the new side: old boxes it missed, and where a drifted box was</p>')
    settings = ", ".join(f"{esc(str(k).replace('_', ' '))}: <code>{esc(fmt.setting(v))}</code>" for k, v in report.settings.items()
                         if v not in (None, ""))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mldeploy {esc(report.kind)}: {esc(s.old)} vs {esc(s.new)}</title><style>{_CSS}</style></head>
<body>
<h1>mldeploy {esc(report.kind)}: <code>{esc(s.old)}</code> (old) vs <code>{esc(s.new)}</code> (new) {verdict}</h1>
<p>{settings}</p>
<h2>Gates</h2>{gates if report.gates else "<p>No gates.</p>"}
{timeline}
<h2>Summary</h2>{summary}
<h2>Per label</h2>{labels if a.per_label else "<p>Neither version found anything.</p>"}
<h2>Errors</h2>{_rows(errors, ("image", "error")) if errors else "<p>Every image was read and answered.</p>"}{_partial_note(report, len(errors))}
{_label_problems(report)}
<h2 id="disagreements">Disagreeing images ({disagreeing})</h2>
<p>{disagreeing} of {a.images} images differ (an image the new version failed on counts).{more}</p>{legend if figures else ""}
{"".join(figures)}
</body></html>
"""
